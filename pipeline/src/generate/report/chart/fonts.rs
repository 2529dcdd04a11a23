//! Text and fonts: the shipped DejaVu Sans and NanumSquare (Hangul), registered with plotters
//! once, the family a PNG chart needs for its words, and labels shortened to fit.

use std::sync::OnceLock;

use plotters::prelude::*;

use super::plot::{Plot, Prepared};
use super::spec::ChartError;

/// The font charts are drawn with (DejaVu Sans; licence in `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
/// The family name charts ask for, under which [`FONT`] is registered.
pub(super) const FAMILY: &str = "sans-serif";
/// The font for PNG charts whose words have letters [`FONT`] lacks — Hangul above all, for the
/// Korean shops Tidemark serves (NanumSquare: Hangul, Latin letters and digits; licence in
/// `assets/fonts/LICENSE-NanumSquare.txt`). SVG charts keep [`FAMILY`]: the browser or mail
/// client draws their text with its own fonts.
static FONT_HANGUL: &[u8] = include_bytes!("../../../../assets/fonts/NanumSquareR.ttf");
/// The family [`FONT_HANGUL`] is registered under.
pub(super) const FAMILY_HANGUL: &str = "NanumSquare";

/// Registers the shipped font with plotters, once.
pub(super) fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
            && plotters::style::register_font(FAMILY_HANGUL, FontStyle::Normal, FONT_HANGUL).is_ok()
            && plotters::style::register_font(FAMILY_HANGUL, FontStyle::Bold, FONT_HANGUL).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Draw("the shipped font does not load".into()))
    }
}

pub(super) fn font(family: &'static str, size: f64) -> TextStyle<'static> {
    TextStyle::from((family, size).into_font()).color(&BLACK)
}

/// Every word a chart shows.
fn words(prepared: &Prepared) -> Vec<&str> {
    let mut out = vec![
        prepared.title.as_str(),
        prepared.x_desc.as_str(),
        prepared.y_desc.as_str(),
    ];
    out.extend(prepared.note.as_deref());
    match &prepared.plot {
        Plot::Categories {
            categories, series, ..
        } => {
            out.extend(categories.iter().map(String::as_str));
            out.extend(series.iter().map(|s| s.name.as_str()));
        }
        Plot::Pareto { categories, .. } => out.extend(categories.iter().map(String::as_str)),
        Plot::Quadrant { points, .. } => out.extend(points.iter().map(|(name, ..)| name.as_str())),
    }
    out
}

/// The family a PNG chart is drawn with: [`FAMILY_HANGUL`] when some word has a letter
/// [`FONT`] lacks and it has, else [`FAMILY`].
pub(super) fn bitmap_family(prepared: &Prepared) -> &'static str {
    use ab_glyph::Font as _;
    let (Ok(main), Ok(hangul)) = (
        ab_glyph::FontRef::try_from_slice(FONT),
        ab_glyph::FontRef::try_from_slice(FONT_HANGUL),
    ) else {
        return FAMILY;
    };
    let wanted = words(prepared)
        .iter()
        .flat_map(|w| w.chars())
        .any(|c| !c.is_whitespace() && main.glyph_id(c).0 == 0 && hangul.glyph_id(c).0 != 0);
    if wanted { FAMILY_HANGUL } else { FAMILY }
}

/// Shortens a label to `max` characters, with an ellipsis.
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}
