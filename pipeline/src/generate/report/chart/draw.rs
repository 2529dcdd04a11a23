//! The picture: the title and note, axes, category labels, legends and each kind's marks
//! (bars, stacked bars, lines, the Pareto chart, the quadrant scatter), on any plotters backend.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::generate::report::table::format_number;

use super::fonts::{font, shorten};
use super::plot::{CategoryStyle, Plot, Prepared, Series};

/// Series colours, in order (Tableau 10: distinct, readable on white).
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Bar colours of ABC classes A, B and C.
pub(super) const CLASS_COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];
/// The Pareto chart's cumulative-share line.
pub(super) const CUMULATIVE_COLOR: RGBColor = RGBColor(214, 39, 40);
/// Split lines and notes.
pub(super) const MUTED: RGBColor = RGBColor(110, 110, 110);
/// Quadrant colours, by code: HH, HL, LH, LL.
const QUADRANTS: [(&str, &str, RGBColor); 4] = [
    ("HH", "star", RGBColor(44, 160, 44)),
    ("HL", "cash cow", RGBColor(31, 119, 180)),
    ("LH", "question mark", RGBColor(255, 127, 14)),
    ("LL", "dog", RGBColor(127, 127, 127)),
];

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Room for the y axis labels, pixels.
fn y_label_area(low: f64, high: f64) -> u32 {
    let longest = [low, high]
        .iter()
        .map(|v| format_number(*v).chars().count())
        .max()
        .unwrap_or(1);
    (longest as u32 * 8 + 44).min(140)
}

pub(super) fn draw<DB>(root: &DrawingArea<DB, Shift>, prepared: &Prepared) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let center = (width / 2) as i32;
    root.draw(&Text::new(
        shorten(&prepared.title, 90),
        (center, 8),
        font(prepared.family, 18.0).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let header = if let Some(note) = &prepared.note {
        root.draw(&Text::new(
            shorten(note, 110),
            (center, 32),
            font(prepared.family, 12.0)
                .color(&MUTED)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        50
    } else {
        34
    };
    let (_, body) = root.split_vertically(header);
    match &prepared.plot {
        Plot::Categories {
            categories,
            series,
            style,
        } => draw_categories(root, &body, prepared, categories, series, *style),
        Plot::Pareto {
            categories,
            values,
            classes,
            cumulative,
        } => draw_pareto(
            root, &body, prepared, categories, values, classes, cumulative,
        ),
        Plot::Quadrant {
            points,
            x_split,
            y_split,
        } => draw_quadrant(&body, prepared, points, *x_split, *y_split),
    }
}

/// Writes category labels under the x axis, every `step`-th when they would overlap.
fn draw_category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    family: &'static str,
    categories: &[String],
    position: impl Fn(usize) -> (i32, i32),
    slot: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let longest = categories
        .iter()
        .map(|c| c.chars().count().min(16))
        .max()
        .unwrap_or(1);
    let needed = longest as f64 * 7.0 + 8.0;
    let step = ((needed / slot.max(1.0)).ceil() as usize).max(1);
    for (i, c) in categories.iter().enumerate().step_by(step) {
        let (px, py) = position(i);
        root.draw(&Text::new(
            shorten(c, 16),
            (px, py + 6),
            font(family, 12.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    Ok(())
}

fn draw_categories<DB>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    categories: &[String],
    series: &[Series],
    style: CategoryStyle,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1);
    let (mut low, mut high) = (0.0f64, 0.0f64);
    if style == CategoryStyle::Stacked {
        for c in 0..n {
            let (pos, neg) = series
                .iter()
                .filter_map(|s| s.values.get(c).copied().flatten())
                .fold(
                    (0.0, 0.0),
                    |(p, q), v| if v >= 0.0 { (p + v, q) } else { (p, q + v) },
                );
            high = high.max(pos);
            low = low.min(neg);
        }
    } else {
        for v in series.iter().flat_map(|s| s.values.iter().flatten()) {
            high = high.max(*v);
            low = low.min(*v);
        }
    }
    if high - low <= f64::EPSILON {
        high = low + 1.0;
    }
    // Room above the highest value for the legend.
    let headroom = if series.len() > 1 { 0.25 } else { 0.08 };
    let high = high + (high - low) * headroom;
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(low, high))
        .build_cartesian_2d(0f64..n as f64, low..high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    let slot = {
        let (a, _) = chart.backend_coord(&(0.0, low));
        let (b, _) = chart.backend_coord(&(1.0, low));
        f64::from(b - a)
    };
    let position = |i: usize| chart.backend_coord(&(i as f64 + 0.5, low));
    draw_category_labels(root, prepared.family, categories, position, slot)?;
    let m = series.len().max(1) as f64;
    let mut stack_up = vec![0.0f64; n];
    let mut stack_down = vec![0.0f64; n];
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let drawn = match style {
            CategoryStyle::Lines => {
                let points: Vec<(f64, f64)> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i as f64 + 0.5, v)))
                    .collect();
                let dots = if points.len() <= 60 {
                    points.clone()
                } else {
                    Vec::new()
                };
                chart.draw_series(
                    dots.into_iter()
                        .map(move |p| Circle::new(p, 3, color.filled())),
                )?;
                chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?
            }
            CategoryStyle::Bars => {
                let bars: Vec<Rectangle<(f64, f64)>> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        let v = (*v)?;
                        let x0 = i as f64 + 0.1 + 0.8 * k as f64 / m;
                        Some(Rectangle::new(
                            [(x0, 0.0), (x0 + 0.8 / m, v)],
                            color.filled(),
                        ))
                    })
                    .collect();
                chart.draw_series(bars)?
            }
            CategoryStyle::Stacked => {
                let mut bars = Vec::new();
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let stack = if v >= 0.0 {
                        &mut stack_up[i]
                    } else {
                        &mut stack_down[i]
                    };
                    let base = *stack;
                    *stack += v;
                    bars.push(Rectangle::new(
                        [(i as f64 + 0.1, base), (i as f64 + 0.9, base + v)],
                        color.filled(),
                    ));
                }
                chart.draw_series(bars)?
            }
        };
        drawn
            .label(shorten(&s.name, 30))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(font(prepared.family, 12.0))
            .draw()?;
    }
    Ok(())
}

fn draw_pareto<DB>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    categories: &[String],
    values: &[f64],
    classes: &[usize],
    cumulative: &[f64],
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1);
    let low = values.iter().copied().fold(0.0f64, f64::min);
    let mut high = values.iter().copied().fold(0.0f64, f64::max);
    if high - low <= f64::EPSILON {
        high = low + 1.0;
    }
    let high = high + (high - low) * 0.25;
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(10)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(low, high))
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, low..high)?
        .set_secondary_coord(0f64..n as f64, 0f64..100f64);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.0}%"))
        .y_desc("cumulative share")
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .draw()?;
    let slot = {
        let (a, _) = chart.backend_coord(&(0.0, low));
        let (b, _) = chart.backend_coord(&(1.0, low));
        f64::from(b - a)
    };
    let position = |i: usize| chart.backend_coord(&(i as f64 + 0.5, low));
    draw_category_labels(root, prepared.family, categories, position, slot)?;
    for (class, name) in ["A", "B", "C"].iter().enumerate() {
        let color = CLASS_COLORS[class];
        let bars: Vec<Rectangle<(f64, f64)>> = values
            .iter()
            .zip(classes)
            .enumerate()
            .filter(|(_, (_, c))| **c == class)
            .map(|(i, (v, _))| {
                Rectangle::new(
                    [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *v)],
                    color.filled(),
                )
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        chart
            .draw_series(bars)?
            .label(format!("class {name}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let points: Vec<(f64, f64)> = cumulative
        .iter()
        .enumerate()
        .map(|(i, c)| (i as f64 + 0.5, *c))
        .collect();
    chart.draw_secondary_series(
        points
            .clone()
            .into_iter()
            .map(|p| Circle::new(p, 3, CUMULATIVE_COLOR.filled())),
    )?;
    chart
        .draw_secondary_series(LineSeries::new(points, CUMULATIVE_COLOR.stroke_width(2)))?
        .label("cumulative share")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 12, y)], CUMULATIVE_COLOR.stroke_width(2))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(font(prepared.family, 12.0))
        .draw()?;
    Ok(())
}

fn draw_quadrant<DB>(
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    points: &[(String, f64, f64)],
    x_split: f64,
    y_split: f64,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let span = |values: &mut dyn Iterator<Item = f64>, split: f64| {
        let (mut lo, mut hi) = (split, split);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let pad = ((hi - lo) * 0.08).max(1e-9);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = span(&mut points.iter().map(|p| p.1), x_split);
    let (y0, y1) = span(&mut points.iter().map(|p| p.2), y_split);
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(y0, y1))
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    let split_style = MUTED.stroke_width(1);
    chart.draw_series(LineSeries::new(
        vec![(x_split, y0), (x_split, y1)],
        split_style,
    ))?;
    chart.draw_series(LineSeries::new(
        vec![(x0, y_split), (x1, y_split)],
        split_style,
    ))?;
    for (code, name, color) in QUADRANTS {
        let right = code.starts_with('H');
        let top = code.ends_with('H');
        let (px, py) =
            chart.backend_coord(&(if right { x1 } else { x0 }, if top { y1 } else { y0 }));
        let pos = Pos::new(
            if right { HPos::Right } else { HPos::Left },
            if top { VPos::Top } else { VPos::Bottom },
        );
        let (bx, by) = body.get_base_pixel();
        let dx = if right { -6 } else { 6 };
        let dy = if top { 6 } else { -6 };
        body.draw(&Text::new(
            name,
            (px + dx - bx, py + dy - by),
            font(prepared.family, 14.0).color(&color).pos(pos),
        ))?;
    }
    let color_of = |x: f64, y: f64| {
        let code = match (x >= x_split, y >= y_split) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        QUADRANTS[code].2
    };
    chart.draw_series(
        points
            .iter()
            .map(|(_, x, y)| Circle::new((*x, *y), 5, color_of(*x, *y).filled())),
    )?;
    if points.len() <= 30 {
        chart.draw_series(
            points
                .iter()
                .filter(|p| !p.0.is_empty())
                .map(|(name, x, y)| {
                    EmptyElement::at((*x, *y))
                        + Text::new(
                            shorten(name, 20),
                            (7, -3),
                            font(prepared.family, 11.0).pos(Pos::new(HPos::Left, VPos::Bottom)),
                        )
                }),
        )?;
    }
    Ok(())
}
