//! The charts drawn whole: the SVG read back element by element and the PNG pixel by pixel.

use std::collections::HashMap;

use plotters::style::RGBColor;
use serde_json::{Value, json};

use super::draw::{CLASS_COLORS, CUMULATIVE_COLOR, MUTED, PALETTE};
use super::fonts::{FAMILY, FAMILY_HANGUL, bitmap_family};
use super::plot::prepare;
use super::*;
use crate::generate::report::table::{Column, ColumnKind, Table};

/// One element of an SVG document: its tag, attributes and text.
#[derive(Debug)]
struct Element {
    tag: String,
    attrs: HashMap<String, String>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }
    fn num(&self, name: &str) -> f64 {
        self.attr(name).parse().unwrap_or(f64::NAN)
    }
}

/// The elements of a flat SVG document (plotters writes no nesting beyond `<svg>`).
fn elements(svg: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap();
        let head = &rest[..end];
        rest = &rest[end + 1..];
        if head.starts_with('/') || head.starts_with('?') || head.starts_with('!') {
            continue;
        }
        let (tag, mut attrs_text) = head.split_once(char::is_whitespace).unwrap_or((head, ""));
        let mut attrs = HashMap::new();
        while let Some(eq) = attrs_text.find("=\"") {
            let name = attrs_text[..eq].trim().to_string();
            let value_start = &attrs_text[eq + 2..];
            let close = value_start.find('"').unwrap();
            attrs.insert(name, value_start[..close].to_string());
            attrs_text = &value_start[close + 1..];
        }
        let mut text = String::new();
        if !head.ends_with('/') && tag == "text" {
            let close = rest.find("</text>").unwrap();
            text = rest[..close]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
                .trim()
                .to_string();
        }
        out.push(Element {
            tag: tag.to_string(),
            attrs,
            text,
        });
    }
    out
}

fn hex(color: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2)
}

fn filled_rects(svg: &[Element], color: RGBColor) -> Vec<&Element> {
    let fill = hex(color);
    svg.iter()
        .filter(|e| e.tag == "rect" && e.attr("fill").eq_ignore_ascii_case(&fill))
        .collect()
}

fn texts(svg: &[Element]) -> Vec<String> {
    svg.iter()
        .filter(|e| e.tag == "text")
        .map(|e| e.text.clone())
        .collect()
}

/// The PNG's pixels, RGB.
fn pixels(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn pixel(image: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * image.0 + x) * 3) as usize;
    [image.2[i], image.2[i + 1], image.2[i + 2]]
}

fn table(columns: &[(&str, ColumnKind)], rows: Vec<Vec<Value>>) -> Table {
    Table {
        columns: columns
            .iter()
            .map(|(name, kind)| Column {
                name: name.to_string(),
                kind: *kind,
            })
            .collect(),
        rows,
    }
}

fn by_channel() -> Table {
    table(
        &[
            ("orders.channel", ColumnKind::Text),
            ("orders.revenue", ColumnKind::Number),
        ],
        vec![
            vec![json!("naver"), json!(4_200_000)],
            vec![json!("kakao"), json!(2_500_000.5)],
            vec![json!("google"), json!(900_000)],
            vec![json!("direct"), json!(120_000)],
        ],
    )
}

#[test]
fn a_dimension_and_a_measure_draw_one_bar_per_category() {
    let table = by_channel();
    let spec = auto_chart(&table).unwrap();
    assert_eq!(spec.kind, ChartKind::Bar);
    assert_eq!(spec.x, "orders.channel");
    assert_eq!(spec.y, ["orders.revenue"]);
    let chart = render(&spec, &table).unwrap();
    assert_eq!((chart.width, chart.height), (800, 400));
    let svg = elements(&chart.svg);
    let bars = filled_rects(&svg, PALETTE[0]);
    assert_eq!(bars.len(), 4, "{}", chart.svg);
    // Left to right in the answer's order, heights following the values.
    let heights: Vec<f64> = bars.iter().map(|b| b.num("height")).collect();
    assert!(heights.windows(2).all(|w| w[0] > w[1]), "{heights:?}");
    let words = texts(&svg);
    for category in ["naver", "kakao", "google", "direct"] {
        assert!(
            words.iter().any(|t| t == category),
            "{category} in {words:?}"
        );
    }
    for label in [
        "orders.channel",
        "orders.revenue",
        "orders.revenue by orders.channel",
    ] {
        assert!(words.iter().any(|t| t == label), "{label} in {words:?}");
    }
    assert!(
        words.iter().any(|t| t.contains(",000,000")),
        "thousands separators on the y axis: {words:?}"
    );
    // One series: no legend box.
    assert_eq!(words.iter().filter(|t| *t == "orders.revenue").count(), 1);

    let image = pixels(&chart.png);
    assert_eq!((image.0, image.1), (800, 400));
    for bar in &bars {
        let (x, y) = (bar.num("x"), bar.num("y"));
        let (w, h) = (bar.num("width"), bar.num("height"));
        let centre = pixel(&image, (x + w / 2.0) as u32, (y + h / 2.0) as u32);
        assert_eq!(centre, [PALETTE[0].0, PALETTE[0].1, PALETTE[0].2]);
        // Above the bar, inside its column, the plot is background.
        let above = pixel(&image, (x + w / 2.0) as u32, (y - 3.0) as u32);
        assert_ne!(above, centre);
    }
}

#[test]
fn hangul_words_are_drawn_with_letters_not_boxes_in_png() {
    let channels = |name: &str| {
        table(
            &[
                ("orders.channel", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
            ],
            vec![
                vec![json!(name), json!(100)],
                vec![json!("naver"), json!(50)],
            ],
        )
    };
    let draw = |name: &str| render(&auto_chart(&channels(name)).unwrap(), &channels(name));
    let (a, b) = (draw("가나다").unwrap(), draw("라마바").unwrap());
    // A font without Hangul draws both names as the same three boxes: the images would be
    // equal. With Hangul glyphs the labels differ.
    assert_ne!(a.png, b.png);
    // The SVG names the text and leaves the font to the reader's own.
    assert!(texts(&elements(&a.svg)).iter().any(|t| t == "가나다"));
    assert!(a.svg.contains("font-family=\"sans-serif\""));
    // Latin words keep the main font.
    let latin = prepare(&auto_chart(&by_channel()).unwrap(), &by_channel()).unwrap();
    assert_eq!(bitmap_family(&latin), FAMILY);
    let korean = prepare(
        &auto_chart(&channels("가나다")).unwrap(),
        &channels("가나다"),
    )
    .unwrap();
    assert_eq!(bitmap_family(&korean), FAMILY_HANGUL);
}

#[test]
fn text_is_drawn_with_the_shipped_font() {
    let chart = render(&auto_chart(&by_channel()).unwrap(), &by_channel()).unwrap();
    let image = pixels(&chart.png);
    // The title band holds dark (text) pixels.
    let dark = (0..800)
        .flat_map(|x| (4..30).map(move |y| (x, y)))
        .filter(|&(x, y)| pixel(&image, x, y).iter().all(|c| *c < 100))
        .count();
    assert!(dark > 100, "{dark} dark pixels in the title band");
}

fn daily() -> Table {
    table(
        &[
            ("orders.order_ts.month", ColumnKind::Time),
            ("orders.revenue", ColumnKind::Number),
            ("orders.count", ColumnKind::Number),
            ("orders.revenue.change_pct", ColumnKind::Number),
        ],
        vec![
            vec![json!("2024-03-01"), json!(3000), json!(30), json!(0.5)],
            vec![json!("2024-01-01"), json!(1000), json!(10), Value::Null],
            vec![json!("2024-02-01"), json!(2000), json!(20), json!(1.0)],
        ],
    )
}

#[test]
fn a_time_bucket_draws_a_line_per_measure_with_dates_by_grain_and_a_legend() {
    let table = daily();
    let spec = auto_chart(&table).unwrap();
    assert_eq!(spec.kind, ChartKind::Line);
    assert_eq!(spec.y, ["orders.revenue", "orders.count"]);
    let chart = render(&spec, &table).unwrap();
    let svg = elements(&chart.svg);
    let lines: Vec<&Element> = svg.iter().filter(|e| e.tag == "polyline").collect();
    for (k, name) in ["orders.revenue", "orders.count"].iter().enumerate() {
        let line = lines
            .iter()
            .find(|l| l.attr("stroke").eq_ignore_ascii_case(&hex(PALETTE[k])))
            .unwrap_or_else(|| panic!("a line for {name}"));
        assert_eq!(line.attr("points").split_whitespace().count(), 3);
        assert!(texts(&svg).iter().any(|t| t == name), "legend entry {name}");
    }
    let words = texts(&svg);
    let months: Vec<&String> = words.iter().filter(|t| t.ends_with(" 2024")).collect();
    assert_eq!(months, ["Jan 2024", "Feb 2024", "Mar 2024"]);
    // The revenue line rises left to right (SVG y grows downwards).
    let revenue = lines
        .iter()
        .find(|l| l.attr("stroke").eq_ignore_ascii_case(&hex(PALETTE[0])))
        .unwrap();
    let ys: Vec<f64> = revenue
        .attr("points")
        .split_whitespace()
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(ys.windows(2).all(|w| w[0] > w[1]), "{ys:?}");
}

#[test]
fn a_time_bucket_and_a_dimension_draw_a_line_per_dimension_value() {
    let table = table(
        &[
            ("orders.order_ts.day", ColumnKind::Time),
            ("orders.channel", ColumnKind::Text),
            ("orders.revenue", ColumnKind::Number),
        ],
        vec![
            vec![json!("2024-06-01"), json!("naver"), json!(10)],
            vec![json!("2024-06-01"), json!("kakao"), json!(5)],
            vec![json!("2024-06-02"), json!("naver"), json!(12)],
            vec![json!("2024-06-02"), json!("kakao"), json!(7)],
        ],
    );
    let spec = auto_chart(&table).unwrap();
    assert_eq!(
        (spec.kind, spec.series.as_deref()),
        (ChartKind::Line, Some("orders.channel"))
    );
    let chart = render(&spec, &table).unwrap();
    let svg = elements(&chart.svg);
    let strokes: Vec<String> = svg
        .iter()
        .filter(|e| e.tag == "polyline")
        .map(|e| e.attr("stroke").to_uppercase())
        .collect();
    for color in &PALETTE[..2] {
        assert_eq!(strokes.iter().filter(|s| **s == hex(*color)).count(), 1);
    }
    assert!(!strokes.contains(&hex(PALETTE[2])));
    let words = texts(&svg);
    for t in ["naver", "kakao", "2024-06-01", "2024-06-02"] {
        assert!(words.iter().any(|w| w == t), "{t} in {words:?}");
    }
}

#[test]
fn two_dimensions_draw_stacked_bars() {
    let table = table(
        &[
            ("orders.channel", ColumnKind::Text),
            ("orders.device", ColumnKind::Text),
            ("orders.revenue", ColumnKind::Number),
        ],
        vec![
            vec![json!("naver"), json!("mobile"), json!(300)],
            vec![json!("naver"), json!("desktop"), json!(100)],
            vec![json!("kakao"), json!("mobile"), json!(200)],
        ],
    );
    let spec = auto_chart(&table).unwrap();
    assert_eq!(spec.kind, ChartKind::StackedBar);
    let chart = render(&spec, &table).unwrap();
    let svg = elements(&chart.svg);
    // Legend swatches are rects too: one more than the bars.
    let mobile = filled_rects(&svg, PALETTE[0]);
    let desktop = filled_rects(&svg, PALETTE[1]);
    assert_eq!((mobile.len(), desktop.len()), (3, 2));
    // naver's desktop part sits on its mobile part.
    let (m, d) = (mobile[0], desktop[0]);
    assert!((d.num("y") + d.num("height") - m.num("y")).abs() <= 1.0);
    assert!((m.num("height") - 3.0 * d.num("height")).abs() <= 2.0);
    let words = texts(&svg);
    assert!(words.iter().any(|w| w == "mobile") && words.iter().any(|w| w == "desktop"));
}

#[test]
fn abc_columns_draw_a_pareto_chart_sorted_descending_up_to_100_percent() {
    let table = table(
        &[
            ("orders.product", ColumnKind::Text),
            ("orders.revenue", ColumnKind::Number),
            ("abc_share", ColumnKind::Number),
            ("abc_class", ColumnKind::Text),
        ],
        vec![
            vec![json!("socks"), json!(50), json!(0.9), json!("B")],
            vec![json!("shoes"), json!(400), json!(0.8), json!("A")],
            vec![json!("hats"), json!(30), json!(0.96), json!("C")],
            vec![json!("bags"), json!(20), json!(1.0), json!("C")],
        ],
    );
    let spec = auto_chart(&table).unwrap();
    assert_eq!(spec.kind, ChartKind::Pareto);
    assert_eq!(
        (spec.x.as_str(), spec.y[0].as_str()),
        ("orders.product", "orders.revenue")
    );
    let chart = render(&spec, &table).unwrap();
    let svg = elements(&chart.svg);
    let mut bars: Vec<&Element> = CLASS_COLORS
        .iter()
        .flat_map(|c| filled_rects(&svg, *c))
        .filter(|r| r.num("width") > 14.0)
        .collect();
    assert_eq!(bars.len(), 4);
    bars.sort_by(|a, b| a.num("x").total_cmp(&b.num("x")));
    let heights: Vec<f64> = bars.iter().map(|b| b.num("height")).collect();
    assert!(heights.windows(2).all(|w| w[0] >= w[1]), "{heights:?}");
    assert_eq!(bars[0].attr("fill"), hex(CLASS_COLORS[0]));
    assert_eq!(bars[1].attr("fill"), hex(CLASS_COLORS[1]));
    assert_eq!(bars[3].attr("fill"), hex(CLASS_COLORS[2]));
    let words = texts(&svg);
    let labels: Vec<&String> = words
        .iter()
        .filter(|w| ["socks", "shoes", "hats", "bags"].contains(&w.as_str()))
        .collect();
    assert_eq!(labels, ["shoes", "socks", "hats", "bags"]);
    for entry in ["class A", "class B", "class C", "cumulative share"] {
        assert!(words.iter().any(|w| w == entry), "legend {entry}");
    }
    let line = svg
        .iter()
        .find(|e| e.tag == "polyline" && e.attr("stroke") == hex(CUMULATIVE_COLOR))
        .unwrap();
    let points: Vec<(f64, f64)> = line
        .attr("points")
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect();
    assert_eq!(points.len(), 4);
    assert!(
        points.windows(2).all(|w| w[0].1 >= w[1].1),
        "cumulative rises"
    );
    let hundred = svg
        .iter()
        .find(|e| e.tag == "text" && e.text == "100%")
        .unwrap();
    assert!(
        (points[3].1 - hundred.num("y")).abs() <= 2.0,
        "last point {:?} at the 100% tick {}",
        points[3],
        hundred.num("y")
    );
}

#[test]
fn quadrant_columns_draw_a_scatter_with_splits_and_quadrant_names() {
    let table = table(
        &[
            ("campaigns.name", ColumnKind::Text),
            ("ads.spend", ColumnKind::Number),
            ("ads.roas", ColumnKind::Number),
            ("quadrant_x_split", ColumnKind::Number),
            ("quadrant_y_split", ColumnKind::Number),
            ("quadrant", ColumnKind::Text),
        ],
        vec![
            vec![
                json!("spring"),
                json!(100),
                json!(4.0),
                json!(50),
                json!(2.5),
                json!("HH"),
            ],
            vec![
                json!("summer"),
                json!(20),
                json!(1.0),
                json!(50),
                json!(2.5),
                json!("LL"),
            ],
            vec![
                json!("autumn"),
                json!(30),
                json!(3.0),
                json!(50),
                json!(2.5),
                json!("LH"),
            ],
        ],
    );
    let spec = auto_chart(&table).unwrap();
    assert_eq!(spec.kind, ChartKind::Quadrant);
    assert_eq!(
        (spec.x.as_str(), spec.y[0].as_str()),
        ("ads.spend", "ads.roas")
    );
    let chart = render(&spec, &table).unwrap();
    let svg = elements(&chart.svg);
    let words = texts(&svg);
    for t in [
        "star",
        "cash cow",
        "question mark",
        "dog",
        "spring",
        "summer",
        "autumn",
    ] {
        assert!(words.iter().any(|w| w == t), "{t} in {words:?}");
    }
    assert_eq!(svg.iter().filter(|e| e.tag == "circle").count(), 3);
    let splits = svg
        .iter()
        .filter(|e| e.tag == "polyline" && e.attr("stroke") == hex(MUTED))
        .count();
    assert_eq!(splits, 2);
}

#[test]
fn many_categories_are_cut_to_fifty_with_the_rest_summed_as_other() {
    let rows = (0..120)
        .map(|i| vec![json!(format!("p{i:03}")), json!(1000 - i)])
        .collect();
    let table = table(
        &[
            ("orders.product", ColumnKind::Text),
            ("orders.revenue", ColumnKind::Number),
        ],
        rows,
    );
    let chart = render(&auto_chart(&table).unwrap(), &table).unwrap();
    let svg = elements(&chart.svg);
    assert_eq!(filled_rects(&svg, PALETTE[0]).len(), MAX_CATEGORIES);
    let words = texts(&svg);
    assert!(
        words
            .iter()
            .any(|w| w.contains("71 smallest of 120 categories are summed as \"other\"")),
        "{words:?}"
    );
}

#[test]
fn the_grand_total_row_is_not_drawn() {
    let mut table = by_channel();
    table.columns.push(Column {
        name: "is_total".into(),
        kind: ColumnKind::Text,
    });
    for row in &mut table.rows {
        row.push(json!(false));
    }
    table
        .rows
        .push(vec![Value::Null, json!(7_720_000.5), json!(true)]);
    let chart = render(&auto_chart(&table).unwrap(), &table).unwrap();
    assert_eq!(filled_rects(&elements(&chart.svg), PALETTE[0]).len(), 4);
}

#[test]
fn an_explicit_spec_naming_a_missing_column_is_refused_by_name() {
    let table = by_channel();
    let spec = ChartSpec {
        kind: ChartKind::Bar,
        x: "orders.channel".into(),
        y: vec!["orders.profit".into()],
        series: None,
        title: String::new(),
    };
    let error = render(&spec, &table).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the chart's y column `orders.profit` is not in the table (its columns: orders.channel, orders.revenue)"
    );
    let spec = ChartSpec {
        y: vec!["orders.channel".into()],
        ..spec
    };
    assert!(matches!(
        spec.validate(&table),
        Err(ChartError::NotNumeric { .. })
    ));
    let spec: ChartSpec = serde_json::from_value(json!({
        "kind": "stackedbar", "x": "orders.channel", "y": ["orders.revenue"]
    }))
    .unwrap();
    assert!(matches!(spec.validate(&table), Err(ChartError::Invalid(_))));
    let empty = Table {
        rows: Vec::new(),
        ..table
    };
    let spec = auto_chart(&empty).unwrap();
    assert_eq!(render(&spec, &empty).unwrap_err(), ChartError::NoData);
}

#[test]
fn a_row_without_a_value_per_column_is_refused() {
    let mut table = by_channel();
    table.rows[2].pop();
    let error = render(&auto_chart(&table).unwrap(), &table).unwrap_err();
    assert_eq!(
        error.to_string(),
        "row 2 of the table has 1 values for 2 columns"
    );
}

#[test]
fn no_chart_without_a_measure() {
    let table = table(
        &[("orders.channel", ColumnKind::Text)],
        vec![vec![json!("a")]],
    );
    assert_eq!(auto_chart(&table), None);
}
