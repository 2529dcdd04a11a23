//! A whole report rendered for people: an email-safe HTML page (inline CSS, layout tables; each
//! chart an `<img src="cid:…">` whose PNG travels as an inline attachment), a plain-text part
//! with each block as an aligned text table, and one CSV attachment per block with a table.
//!
//! A block whose query failed is never left out: it renders a placeholder saying so and why.
//! The HTML comes from a minijinja template with HTML auto-escaping, so nothing in a title, an
//! intro, an error or a cell can become markup. [`preview_html`] inlines the images as `data:`
//! URIs so the page opens in a browser.

use std::sync::OnceLock;

use base64::Engine as _;
use minijinja::{Environment, context};
use serde::Serialize;

use super::chart::Chart;
use super::table::{ColumnKind, TOTAL_COLUMN, Table};

/// Most rows of a block shown in the HTML part; the CSV attachment has them all.
pub const HTML_MAX_ROWS: usize = 100;
/// Most rows of a block shown in the text part.
pub const TEXT_MAX_ROWS: usize = 20;
/// Longest cell shown in the text part, characters; longer ones are cut with `…`.
const TEXT_MAX_CELL: usize = 40;
/// Longest block error shown, characters.
const MAX_ERROR_CHARS: usize = 500;

/// What a report says about itself at the top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportHeader {
    /// The report definition's name.
    pub name: String,
    /// The title people read (the name when empty).
    pub title: String,
    /// The introduction, already rendered from the report's template (plain text).
    pub intro: String,
    /// The instant the run was scheduled for, as people read it in `timezone`.
    pub scheduled_for: String,
    /// The report's time zone (IANA name).
    pub timezone: String,
    /// Whether some blocks failed (the report goes out with their placeholders).
    pub partial: bool,
}

/// One block of a report as produced by its run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedBlock {
    /// The block's name in the report definition.
    pub name: String,
    /// Its title (the name when empty).
    pub title: String,
    /// Its query's answer, when shown as a table (and attached as CSV).
    pub table: Option<Table>,
    /// Its chart.
    pub chart: Option<Chart>,
    /// Why it could not be produced (its query failed): it renders as a placeholder.
    pub error: Option<String>,
}

/// A file sent with the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Its file name.
    pub filename: String,
    /// Its MIME type.
    pub content_type: String,
    /// The `Content-ID` (without angle brackets) the HTML refers to as `cid:…`, for inline images.
    pub content_id: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A rendered report, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportDocument {
    /// The message subject.
    pub subject: String,
    /// The HTML part.
    pub html: String,
    /// The plain-text part.
    pub text: String,
    /// Inline chart images and CSV tables.
    pub attachments: Vec<Attachment>,
}

const TEMPLATE: &str = include_str!("report.html");

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // The name ends in `.html`: minijinja escapes every value for HTML.
        if let Err(e) = env.add_template("report.html", TEMPLATE) {
            tracing::error!(error = %e, "the report template does not parse");
        }
        env
    })
}

/// A table as the HTML and text parts show it.
#[derive(Serialize)]
struct ShownTable {
    columns: Vec<ShownColumn>,
    rows: Vec<ShownRow>,
    /// Rows left out.
    more: usize,
}

#[derive(Serialize)]
struct ShownColumn {
    name: String,
    align: &'static str,
}

#[derive(Serialize)]
struct ShownRow {
    cells: Vec<String>,
    total: bool,
}

/// The rows of `table` as people read them, at most `max`: numbers formatted, the `is_total`
/// marker column hidden and its row named "Total".
fn shown(table: &Table, max: usize) -> ShownTable {
    let visible: Vec<usize> = (0..table.columns.len())
        .filter(|&c| table.columns[c].name != TOTAL_COLUMN)
        .collect();
    let columns = visible
        .iter()
        .map(|&c| ShownColumn {
            name: table.columns[c].name.clone(),
            align: if table.columns[c].kind == ColumnKind::Number {
                "right"
            } else {
                "left"
            },
        })
        .collect();
    let rows = (0..table.rows.len().min(max))
        .map(|r| {
            let total = table.is_total_row(r);
            let mut cells: Vec<String> = visible.iter().map(|&c| table.display(r, c)).collect();
            if total && let Some(first) = cells.first_mut().filter(|c| c.is_empty()) {
                *first = "Total".to_string();
            }
            ShownRow { cells, total }
        })
        .collect();
    ShownTable {
        columns,
        rows,
        more: table.rows.len().saturating_sub(max),
    }
}

/// A file-name-safe form of a block name: lowercase ASCII letters, digits and dashes.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(40).collect();
    if out.is_empty() {
        "block".to_string()
    } else {
        out
    }
}

fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// Renders a report: its subject, HTML and text parts, and attachments.
pub fn render_report(header: &ReportHeader, blocks: &[RenderedBlock]) -> ReportDocument {
    let title = if header.title.is_empty() {
        header.name.clone()
    } else {
        header.title.clone()
    };
    let mut attachments = Vec::new();
    let mut html_blocks = Vec::with_capacity(blocks.len());
    let mut text = String::new();
    text_heading(&mut text, &title, '=');
    text.push_str(&format!("{} ({})\n", header.scheduled_for, header.timezone));
    if header.partial {
        text.push_str("Some parts of this report could not be produced; they are marked below.\n");
    }
    if !header.intro.trim().is_empty() {
        text.push('\n');
        text.push_str(header.intro.trim_end());
        text.push('\n');
    }
    for (i, block) in blocks.iter().enumerate() {
        let base = format!("{:02}-{}", i + 1, slug(&block.name));
        let block_title = if block.title.is_empty() {
            block.name.clone()
        } else {
            block.title.clone()
        };
        text.push('\n');
        text_heading(&mut text, &block_title, '-');
        let error = block
            .error
            .as_deref()
            .map(|e| cut_chars(e, MAX_ERROR_CHARS));
        let mut image = None;
        let mut csv_name = None;
        let mut csv_error = None;
        if let Some(error) = &error {
            text.push_str(&format!("This part could not be produced: {error}\n"));
        } else {
            if let Some(chart) = &block.chart {
                let content_id = format!("chart-{base}@tidemark");
                let filename = format!("{base}.png");
                text.push_str(&format!("Chart attached: {filename}\n"));
                attachments.push(Attachment {
                    filename,
                    content_type: "image/png".into(),
                    content_id: Some(content_id.clone()),
                    data: chart.png.clone(),
                });
                image = Some((content_id, chart.width));
            }
            if let Some(table) = &block.table {
                match table.to_csv() {
                    Ok(csv) => {
                        let filename = format!("{base}.csv");
                        attachments.push(Attachment {
                            filename: filename.clone(),
                            content_type: "text/csv; charset=utf-8".into(),
                            content_id: None,
                            data: csv.into_bytes(),
                        });
                        csv_name = Some(filename);
                    }
                    Err(e) => csv_error = Some(e.to_string()),
                }
                text_table(&mut text, &shown(table, TEXT_MAX_ROWS), csv_name.as_deref());
            } else if block.chart.is_none() {
                text.push_str("This part has no data.\n");
            }
        }
        html_blocks.push(context! {
            title => block_title,
            error => error,
            image => image.as_ref().map(|(id, _)| id.clone()),
            image_width => image.as_ref().map_or(0, |(_, w)| *w),
            table => block.table.as_ref().filter(|_| block.error.is_none()).map(|t| shown(t, HTML_MAX_ROWS)),
            csv => csv_name,
            csv_error => csv_error,
        });
    }
    let html = environment()
        .get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                name => header.name,
                title => title,
                intro => header.intro.trim(),
                scheduled_for => header.scheduled_for,
                timezone => header.timezone,
                partial => header.partial,
                blocks => html_blocks,
            })
        })
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, report = %header.name, "report HTML template failed");
            format!(
                "<!DOCTYPE html><html><body><pre>{}</pre></body></html>",
                minijinja::HtmlEscape(&text)
            )
        });
    let subject = format!(
        "{}{} — {}",
        if header.partial { "[partial] " } else { "" },
        title,
        header.scheduled_for
    );
    ReportDocument {
        subject,
        html,
        text,
        attachments,
    }
}

fn text_heading(out: &mut String, title: &str, underline: char) {
    out.push_str(title);
    out.push('\n');
    out.extend(std::iter::repeat_n(underline, title.chars().count().max(3)));
    out.push('\n');
}

/// Writes a table with columns padded to their widest cell: text left-aligned, numbers
/// right-aligned, two spaces between columns, a dashed rule under the header.
fn text_table(out: &mut String, table: &ShownTable, csv: Option<&str>) {
    let cell = |s: &str| cut_chars(&s.replace(['\n', '\r', '\t'], " "), TEXT_MAX_CELL);
    let header: Vec<String> = table.columns.iter().map(|c| cell(&c.name)).collect();
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| r.cells.iter().map(|c| cell(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String], out: &mut String| {
        let mut text = String::new();
        for (c, value) in cells.iter().enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            let pad = widths[c].saturating_sub(value.chars().count());
            if table.columns[c].align == "right" {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(value);
            } else {
                text.push_str(value);
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header, out);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for row in &rows {
        line(row, out);
    }
    if rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    if table.more > 0 {
        let more = table.more;
        let rows_word = if more == 1 { "row" } else { "rows" };
        match csv {
            Some(csv) => out.push_str(&format!("… {more} more {rows_word} in {csv}\n")),
            None => out.push_str(&format!("… {more} more {rows_word} not shown\n")),
        }
    }
}

/// The HTML part with every `cid:` image replaced by a `data:` URI of its attachment, for
/// opening in a browser.
pub fn preview_html(doc: &ReportDocument) -> String {
    let mut html = doc.html.clone();
    for attachment in &doc.attachments {
        let Some(id) = &attachment.content_id else {
            continue;
        };
        let uri = format!(
            "data:{};base64,{}",
            attachment.content_type,
            base64::engine::general_purpose::STANDARD.encode(&attachment.data)
        );
        html = html.replace(&format!("cid:{id}"), &uri);
    }
    html
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::chart::{auto_chart, render};
    use super::super::table::Column;
    use super::*;

    fn revenue_by_channel(rows: usize) -> Table {
        Table {
            columns: vec![
                Column {
                    name: "orders.channel".into(),
                    kind: ColumnKind::Text,
                },
                Column {
                    name: "orders.revenue".into(),
                    kind: ColumnKind::Number,
                },
            ],
            rows: (0..rows)
                .map(|i| vec![json!(format!("channel {i}")), json!(1_000_000 / (i + 1))])
                .collect(),
        }
    }

    fn header() -> ReportHeader {
        ReportHeader {
            name: "weekly-revenue".into(),
            title: "Weekly revenue".into(),
            intro: "Last week's revenue by channel.".into(),
            scheduled_for: "2024-06-17 09:00".into(),
            timezone: "Asia/Seoul".into(),
            partial: false,
        }
    }

    fn charted(name: &str, table: Table) -> RenderedBlock {
        let chart = render(&auto_chart(&table).unwrap(), &table).unwrap();
        RenderedBlock {
            name: name.into(),
            title: format!("{name} title"),
            table: Some(table),
            chart: Some(chart),
            error: None,
        }
    }

    /// The `cid:` references of an HTML document.
    fn cids(html: &str) -> Vec<String> {
        html.split("cid:")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_chart_is_an_inline_image_the_html_refers_to() {
        let blocks = [
            charted("By channel", revenue_by_channel(3)),
            charted("Top channels", revenue_by_channel(5)),
        ];
        let doc = render_report(&header(), &blocks);
        let referenced = cids(&doc.html);
        assert_eq!(referenced.len(), 2);
        for cid in &referenced {
            let image = doc
                .attachments
                .iter()
                .find(|a| a.content_id.as_deref() == Some(cid))
                .unwrap_or_else(|| panic!("no attachment for cid:{cid}"));
            assert_eq!(image.content_type, "image/png");
            assert!(image.data.starts_with(b"\x89PNG\r\n\x1a\n"));
        }
        // Every inline attachment is used, and content ids are distinct.
        let inline: Vec<&String> = doc
            .attachments
            .iter()
            .filter_map(|a| a.content_id.as_ref())
            .collect();
        assert_eq!(inline.len(), 2);
        assert_ne!(inline[0], inline[1]);
        assert_eq!(doc.subject, "Weekly revenue — 2024-06-17 09:00");
        let names: Vec<&str> = doc
            .attachments
            .iter()
            .map(|a| a.filename.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "01-by-channel.png",
                "01-by-channel.csv",
                "02-top-channels.png",
                "02-top-channels.csv"
            ]
        );
    }

    #[test]
    fn the_preview_carries_its_images_inline() {
        let blocks = [charted("By channel", revenue_by_channel(3))];
        let doc = render_report(&header(), &blocks);
        let preview = preview_html(&doc);
        assert!(!preview.contains("cid:"));
        let encoded = preview
            .split("data:image/png;base64,")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(png, doc.attachments[0].data);
    }

    #[test]
    fn titles_cells_intro_and_errors_cannot_become_markup() {
        let evil = "<script>alert('x')</script>";
        let mut table = revenue_by_channel(1);
        table.rows[0][0] = json!(evil);
        let blocks = [
            RenderedBlock {
                name: "evil".into(),
                title: evil.into(),
                table: Some(table),
                chart: None,
                error: None,
            },
            RenderedBlock {
                name: "failed".into(),
                title: "Failed".into(),
                error: Some(evil.into()),
                ..RenderedBlock::default()
            },
        ];
        let header = ReportHeader {
            title: evil.into(),
            intro: evil.into(),
            ..header()
        };
        let doc = render_report(&header, &blocks);
        assert!(!doc.html.to_lowercase().contains("<script"), "{}", doc.html);
        // Title (twice: <title> and <h1>), intro, block title, cell, error.
        assert_eq!(
            doc.html.matches("&lt;script&gt;").count(),
            6,
            "{}",
            doc.html
        );
    }

    #[test]
    fn a_failed_block_shows_a_placeholder_in_both_parts() {
        let blocks = [
            charted("By channel", revenue_by_channel(2)),
            RenderedBlock {
                name: "ga4".into(),
                title: "Sessions".into(),
                error: Some("GA4 quota exhausted; try again later".into()),
                ..RenderedBlock::default()
            },
        ];
        let header = ReportHeader {
            partial: true,
            ..header()
        };
        let doc = render_report(&header, &blocks);
        let placeholder = "This part could not be produced: GA4 quota exhausted; try again later";
        assert!(doc.html.contains("Sessions"));
        assert!(doc.html.contains(placeholder), "{}", doc.html);
        assert!(doc.text.contains("Sessions\n--------\n"));
        assert!(doc.text.contains(placeholder));
        assert!(doc.subject.starts_with("[partial] Weekly revenue"));
        assert!(
            doc.html
                .contains("Some parts of this report could not be produced")
        );
        // The failed block has no attachments.
        assert!(doc.attachments.iter().all(|a| !a.filename.contains("ga4")));
    }

    #[test]
    fn each_table_is_attached_as_csv_equal_to_it() {
        let mut table = revenue_by_channel(3);
        table.rows[1][0] = json!("Kim, \"Lee\"\nand co");
        table.rows[2][1] = Value::Null;
        let blocks = [RenderedBlock {
            name: "channels".into(),
            title: "Channels".into(),
            table: Some(table.clone()),
            ..RenderedBlock::default()
        }];
        let doc = render_report(&header(), &blocks);
        assert_eq!(doc.attachments.len(), 1);
        let csv_file = &doc.attachments[0];
        assert_eq!(csv_file.filename, "01-channels.csv");
        assert_eq!(csv_file.content_type, "text/csv; charset=utf-8");
        let mut reader = csv::Reader::from_reader(csv_file.data.as_slice());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["orders.channel", "orders.revenue"]
        );
        let records: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        let expected: Vec<Vec<String>> = table
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(records, expected);
    }

    #[test]
    fn the_text_part_aligns_columns_and_says_how_many_rows_were_left_out() {
        let mut table = revenue_by_channel(25);
        table.columns.push(Column {
            name: TOTAL_COLUMN.into(),
            kind: ColumnKind::Text,
        });
        for row in &mut table.rows {
            row.push(json!(false));
        }
        let blocks = [RenderedBlock {
            name: "channels".into(),
            title: "Channels".into(),
            table: Some(table),
            ..RenderedBlock::default()
        }];
        let doc = render_report(&header(), &blocks);
        let text = &doc.text;
        assert!(text.starts_with(
            "Weekly revenue\n==============\n2024-06-17 09:00 (Asia/Seoul)\n\nLast week's revenue by channel.\n"
        ));
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("orders.channel"))
            .collect();
        assert_eq!(lines[0], "orders.channel  orders.revenue");
        assert_eq!(lines[1], "--------------  --------------");
        assert_eq!(lines[2], "channel 0            1,000,000");
        assert_eq!(lines[3], "channel 1              500,000");
        // Numbers end at the header's right edge, text starts at the left.
        let body = &lines[2..2 + TEXT_MAX_ROWS];
        assert!(body.iter().all(|l| l.chars().count() == lines[0].len()));
        assert!(body.iter().all(|l| l.starts_with("channel ")));
        assert_eq!(lines[2 + TEXT_MAX_ROWS], "… 5 more rows in 01-channels.csv");
        assert!(!text.contains(TOTAL_COLUMN));
        // The HTML shows all 25 (under its own limit) and hides the marker column too.
        assert_eq!(doc.html.matches("<td align=\"left\"").count(), 25);
        assert_eq!(doc.html.matches("<td align=\"right\"").count(), 25);
        assert!(!doc.html.contains(TOTAL_COLUMN));
    }

    #[test]
    fn the_grand_total_row_reads_total() {
        let mut table = revenue_by_channel(2);
        table.columns.push(Column {
            name: TOTAL_COLUMN.into(),
            kind: ColumnKind::Text,
        });
        table.rows[0].push(json!(false));
        table.rows[1].push(json!(false));
        table
            .rows
            .push(vec![Value::Null, json!(1_500_000), json!(true)]);
        let blocks = [RenderedBlock {
            name: "channels".into(),
            table: Some(table),
            ..RenderedBlock::default()
        }];
        let doc = render_report(&header(), &blocks);
        assert!(
            doc.text.contains("\nTotal                1,500,000\n"),
            "{}",
            doc.text
        );
        assert!(doc.html.contains("<tr style=\"font-weight:bold;\">"));
        // A block without a title is headed by its name.
        assert!(doc.text.contains("channels\n--------\n"));
    }
}
