//! A chart drawn and encoded: SVG (for the web) and PNG (for email) from one prepared picture.

use plotters::prelude::*;

use crate::generate::report::table::Table;

use super::draw::draw;
use super::fonts::{bitmap_family, register_font};
use super::plot::{Prepared, prepare};
use super::spec::{ChartError, ChartSpec};
use super::{HEIGHT, WIDTH};

/// A drawn chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// The chart as an SVG document.
    pub svg: String,
    /// The same chart as a PNG image.
    pub png: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// Draws the chart `spec` asks for from `table`, as SVG and PNG.
pub fn render(spec: &ChartSpec, table: &Table) -> Result<Chart, ChartError> {
    let mut prepared = prepare(spec, table)?;
    let svg = draw_svg(&prepared)?;
    prepared.family = bitmap_family(&prepared);
    let draw_error = |e: Box<dyn std::error::Error>| ChartError::Draw(e.to_string());
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, &prepared).map_err(draw_error)?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    let png = encode_png(&pixels, WIDTH, HEIGHT)
        .map_err(|e| ChartError::Draw(format!("PNG encoding: {e}")))?;
    Ok(Chart {
        svg,
        png,
        width: WIDTH,
        height: HEIGHT,
    })
}

/// Draws the chart `spec` asks for from `table` as SVG only (the console's charts).
pub fn render_svg(spec: &ChartSpec, table: &Table) -> Result<String, ChartError> {
    draw_svg(&prepare(spec, table)?)
}

fn draw_svg(prepared: &Prepared) -> Result<String, ChartError> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, prepared).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}
