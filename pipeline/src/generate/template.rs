//! One rule template rendered within limits: minijinja's fuel bounds the instructions a render
//! may run, a capped writer bounds its output (cut with a visible marker), and [`check`] refuses
//! at rule creation a template that does not parse or runs away on a sample notification.
//!
//! Fuel counts template instructions, not the work inside one (a filter over a huge sequence is
//! one instruction), so renders that must not hold up others also run under a deadline on a
//! thread of their own ([`render_within`], and [`super::Renderer`] for notifications).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use minijinja::{Environment, ErrorKind};
use serde_json::Value;

/// How much one render may do (`[templates]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Template instructions one render may run (minijinja fuel).
    pub fuel: u64,
    /// Longest rendered message, bytes, marker included; the rest is cut.
    pub max_bytes: usize,
    /// Longest one render may take before its notification goes out with the fallback message.
    pub timeout: Duration,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            fuel: 100_000,
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Why a template gave no message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// It does not parse.
    #[error("{0}")]
    Syntax(String),
    /// It ran more instructions than the fuel allows.
    #[error("it ran out of fuel (more than {fuel} template steps)")]
    OutOfFuel {
        /// The fuel it had.
        fuel: u64,
    },
    /// Its message for a sample notification is longer than the limit (checked at creation
    /// only: a real message is cut instead).
    #[error("its message for a sample notification is longer than {max_bytes} bytes")]
    TooLong {
        /// The limit.
        max_bytes: usize,
    },
    /// It did not finish within the deadline.
    #[error("it took longer than {}ms to render", .0.as_millis())]
    TooSlow(Duration),
    /// It failed while rendering (say, an operation on a value of the wrong type).
    #[error("{0}")]
    Failed(String),
    /// It was not rendered because earlier renders are still running past their deadline.
    #[error("not rendered: {0} earlier renders are still running past their time limit")]
    Busy(usize),
}

/// Appended to a message cut at [`TemplateLimits::max_bytes`].
pub const TRUNCATED_MARKER: &str = "… [truncated]";

/// Longest error text carried in a payload or a message, bytes.
const MAX_ERROR_BYTES: usize = 300;

/// Threads rendering under [`render_within`] right now, finished or abandoned: a bound on how
/// many runaway renders can burn CPU at once, whatever the callers.
static DEADLINE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Most such threads at once; beyond it a render is refused as [`TemplateError::Busy`].
const MAX_DEADLINE_THREADS: usize = 4;

/// Renders `template` against `context` with the fuel and output limits, on the calling thread;
/// a message over the size limit is cut and ends with [`TRUNCATED_MARKER`].
pub fn render(
    template: &str,
    context: &Value,
    limits: &TemplateLimits,
) -> Result<String, TemplateError> {
    render_capped(template, context, limits, false).map(|(message, _)| message)
}

/// [`render`] for HTML: every value the template prints is HTML-escaped unless marked `safe`.
pub fn render_html(
    template: &str,
    context: &Value,
    limits: &TemplateLimits,
) -> Result<String, TemplateError> {
    render_capped(template, context, limits, true).map(|(message, _)| message)
}

/// [`render`] (or [`render_html`]), saying also whether the message was cut.
fn render_capped(
    template: &str,
    context: &Value,
    limits: &TemplateLimits,
    html: bool,
) -> Result<(String, bool), TemplateError> {
    let mut env = Environment::new();
    env.set_fuel(Some(limits.fuel));
    env.add_filter("format", bounded_format);
    env.add_filter("indent", bounded_indent);
    if html {
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    }
    let compiled = env
        .template_from_str(template)
        .map_err(|e| TemplateError::Syntax(shorten(e.to_string())))?;
    let mut out = CappedWriter::new(limits.max_bytes);
    match compiled.render_captured_to(context, &mut out) {
        Ok(_) => Ok((out.into_string(), false)),
        Err(_) if out.full => Ok((out.into_string(), true)),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => {
            Err(TemplateError::OutOfFuel { fuel: limits.fuel })
        }
        Err(e) => Err(TemplateError::Failed(shorten(e.to_string()))),
    }
}

/// Widest field a `format` filter may pad to, characters.
const MAX_FORMAT_WIDTH: u64 = 1_000;

/// minijinja's printf-style `format` filter, refusing a field width or precision over
/// [`MAX_FORMAT_WIDTH`] (or one taken from the arguments, `*`): the filter builds the padded
/// string in one step, so `"%2230000000000d" | format(1)` would try to allocate terabytes — one
/// template instruction, which fuel does not bound, and an abort no writer limit can catch —
/// and a mapping key that is not ASCII, on which minijinja's parser panics.
fn bounded_format(
    state: &minijinja::State,
    format: &minijinja::Value,
    args: minijinja::value::Rest<minijinja::Value>,
) -> Result<minijinja::Value, minijinja::Error> {
    if let Some(text) = format.as_str() {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                continue;
            }
            // A mapping key, `%(name)`: ASCII only (minijinja 2.24 reads it byte by byte and
            // panics inside a multi-byte character).
            if chars.peek() == Some(&'(') {
                for k in chars.by_ref() {
                    if k == ')' {
                        break;
                    }
                    if !k.is_ascii() {
                        return Err(minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            "format: a %(key) must be ASCII",
                        ));
                    }
                }
            }
            // The conversion spec: flags, width, precision, up to the conversion letter.
            let mut number: u64 = 0;
            while let Some(&next) = chars.peek() {
                if next.is_ascii_alphabetic() || next == '%' {
                    chars.next();
                    break;
                }
                chars.next();
                match next {
                    '0'..='9' => {
                        number = number
                            .saturating_mul(10)
                            .saturating_add(u64::from(next as u8 - b'0'));
                        if number > MAX_FORMAT_WIDTH {
                            return Err(minijinja::Error::new(
                                ErrorKind::InvalidOperation,
                                format!("format: a width or precision over {MAX_FORMAT_WIDTH}"),
                            ));
                        }
                    }
                    '*' => {
                        return Err(minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            "format: widths from the arguments ('*') are not supported",
                        ));
                    }
                    _ => number = 0,
                }
            }
        }
    }
    minijinja::filters::format(state, format, args)
}

/// minijinja's `indent` filter, refusing a width over [`MAX_FORMAT_WIDTH`]: it builds the
/// indentation in one step, as `format` does its padding.
fn bounded_indent(
    value: minijinja::value::StringInput<'_>,
    width: Option<usize>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: minijinja::value::Kwargs,
) -> Result<minijinja::Value, minijinja::Error> {
    let asked = match width {
        Some(width) => Some(width),
        None => kwargs.peek::<Option<usize>>("width")?,
    };
    if asked.is_some_and(|w| w as u64 > MAX_FORMAT_WIDTH) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("indent: a width over {MAX_FORMAT_WIDTH}"),
        ));
    }
    minijinja::filters::indent(value, width, first, blank, kwargs)
}

/// [`render`] on a thread of its own, waited for at most `limits.timeout`; a render still
/// running then is left to finish on its own (it is fuel-bounded) and reported as too slow.
/// Says also whether the message was cut.
pub fn render_within(
    template: &str,
    context: Value,
    limits: &TemplateLimits,
) -> Result<(String, bool), TemplateError> {
    render_within_as(template, context, limits, false)
}

fn render_within_as(
    template: &str,
    context: Value,
    limits: &TemplateLimits,
    html: bool,
) -> Result<(String, bool), TemplateError> {
    let running = DEADLINE_THREADS.fetch_add(1, Ordering::SeqCst);
    let slot = ThreadSlot;
    if running >= MAX_DEADLINE_THREADS {
        return Err(TemplateError::Busy(running));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let (template, limits_copy) = (Arc::<str>::from(template), *limits);
    let spawned = std::thread::Builder::new()
        .name("tidemark-template".into())
        .spawn(move || {
            let _slot = slot;
            let _ = tx.send(render_capped(&template, &context, &limits_copy, html));
        });
    if let Err(e) = spawned {
        return Err(TemplateError::Failed(format!(
            "no thread to render on: {e}"
        )));
    }
    match rx.recv_timeout(limits.timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(TemplateError::TooSlow(limits.timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(TemplateError::Failed(
            "the render stopped without an answer".into(),
        )),
    }
}

/// Releases a [`DEADLINE_THREADS`] slot when the render it counts ends (or never started).
struct ThreadSlot;

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        DEADLINE_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks a rule's template before it is stored: it must parse, and a trial render against
/// each sample context must not run out of fuel or time, nor make a message over the size
/// limit. Other render errors are let through: they may come from the samples lacking what real
/// notifications carry.
pub fn check(
    template: &str,
    samples: &[Value],
    limits: &TemplateLimits,
) -> Result<(), TemplateError> {
    check_as(template, samples, limits, false)
}

/// [`check`] for an HTML template ([`render_html`]).
pub fn check_html(
    template: &str,
    sample: &Value,
    limits: &TemplateLimits,
) -> Result<(), TemplateError> {
    check_as(template, std::slice::from_ref(sample), limits, true)
}

fn check_as(
    template: &str,
    samples: &[Value],
    limits: &TemplateLimits,
    html: bool,
) -> Result<(), TemplateError> {
    Environment::new()
        .template_from_str(template)
        .map_err(|e| TemplateError::Syntax(shorten(e.to_string())))?;
    for sample in samples {
        match render_within_as(template, sample.clone(), limits, html) {
            Ok((_, false)) | Err(TemplateError::Failed(_)) => {}
            Ok((_, true)) => {
                return Err(TemplateError::TooLong {
                    max_bytes: limits.max_bytes,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `text` cut to [`MAX_ERROR_BYTES`] at a character boundary.
pub(super) fn shorten(text: String) -> String {
    cut(text, MAX_ERROR_BYTES, "…")
}

/// `text` cut so that it and `marker` fit in `max` bytes, at a character boundary, with the
/// marker appended when something was cut.
fn cut(mut text: String, max: usize, marker: &str) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(marker.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(marker);
    }
    text
}

/// Collects output up to a limit; past it, refuses the write, which stops the render.
struct CappedWriter {
    buf: Vec<u8>,
    max: usize,
    full: bool,
}

impl CappedWriter {
    fn new(max: usize) -> CappedWriter {
        CappedWriter {
            buf: Vec::new(),
            max,
            full: false,
        }
    }

    /// The output, cut with [`TRUNCATED_MARKER`] when it hit the limit.
    fn into_string(self) -> String {
        let text = match String::from_utf8(self.buf) {
            Ok(text) => text,
            // Only a write cut mid-character can end in a partial one.
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        };
        if self.full {
            // Longer than the limit so that `cut` cuts it and appends the marker.
            let mut text = text;
            text.push(' ');
            cut(text, self.max.max(TRUNCATED_MARKER.len()), TRUNCATED_MARKER)
        } else {
            text
        }
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.max - self.buf.len();
        if data.len() > room {
            self.buf.extend_from_slice(&data[..room]);
            self.full = true;
            return Err(io::Error::other("the message reached its size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_wider_than_the_limit_is_an_error_not_an_allocation() {
        let limits = TemplateLimits::default();
        let context = serde_json::json!({"n": 7});
        assert_eq!(
            render(
                "{{ '%05d|%-6s|%.2f' | format(n, 'ab', 1.5) }}",
                &context,
                &limits
            ),
            Ok("00007|ab    |1.50".to_string())
        );
        assert_eq!(
            render("{{ 'a\nb' | indent(2, first=true) }}", &context, &limits),
            Ok("  a\n  b".to_string())
        );
        // What the fuzzer found: a width of 22 trillion.
        let found = "{{ \"%2230000000000stat000000000000000000d\" | format(x) }}";
        for template in [
            found,
            "{{ '%(키)s' | format(x) }}",
            "{{ '%2000d' | format(1) }}",
            "{{ '%.5000f' | format(1.0) }}",
            "{{ '%*d' | format(5, 1) }}",
            "{{ 'a\nb' | indent(10000000000000) }}",
            "{{ 'a\nb' | indent(width=10000000000000) }}",
        ] {
            let outcome = render(template, &context, &limits);
            assert!(
                matches!(&outcome, Err(TemplateError::Failed(m)) if m.contains("format:") || m.contains("indent:")),
                "{template}: {outcome:?}"
            );
        }
    }
    use serde_json::json;

    const NESTED: &str =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    const NESTED_PRINTING: &str =
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}";

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let limits = TemplateLimits::default();
        let started = std::time::Instant::now();
        assert_eq!(
            render(NESTED, &json!({}), &limits),
            Err(TemplateError::OutOfFuel { fuel: 100_000 })
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            render("{{ a }}-{{ b }}", &json!({"a": 1, "b": "x"}), &limits).unwrap(),
            "1-x"
        );
    }

    #[test]
    fn output_is_capped_with_the_marker() {
        let limits = TemplateLimits {
            max_bytes: 1_000,
            ..TemplateLimits::default()
        };
        for template in ["{{ 'ab' * n }}", "{% for i in range(n) %}é{% endfor %}"] {
            let out = render(template, &json!({"n": 90_000}), &limits).unwrap();
            assert!(out.len() <= 1_000, "{}", out.len());
            assert!(out.len() > 900, "{}", out.len());
            assert!(out.ends_with(TRUNCATED_MARKER), "{out}");
        }
        let out = render("{{ 'ab' * n }}", &json!({"n": 10}), &limits).unwrap();
        assert_eq!(out, "ab".repeat(10));
    }

    #[test]
    fn check_refuses_syntax_errors_and_runaways_but_not_data_errors() {
        let limits = TemplateLimits::default();
        let samples = [json!({"kind": "match", "event": {"attrs": {}}})];
        let e = check("{{ rule.name", &samples, &limits).unwrap_err();
        assert!(matches!(e, TemplateError::Syntax(_)), "{e}");
        let e = check(NESTED, &samples, &limits).unwrap_err();
        assert_eq!(e, TemplateError::OutOfFuel { fuel: 100_000 });
        let e = check(NESTED_PRINTING, &samples, &limits).unwrap_err();
        assert_eq!(e, TemplateError::TooLong { max_bytes: 65_536 });
        // Cut, not refused, when rendering a real message.
        let out = render(NESTED_PRINTING, &json!({}), &limits).unwrap();
        assert!(out.len() <= 65_536 && out.ends_with(TRUNCATED_MARKER));
        check("{{ 1 / event.attrs.n }}", &samples, &limits).unwrap();
        check(
            "{% for i in range(event.attrs.n) %}{% for j in range(event.attrs.n) %}x{% endfor %}{% endfor %}",
            &samples,
            &limits,
        )
        .unwrap();
    }

    #[test]
    fn a_render_past_its_deadline_is_too_slow() {
        let limits = TemplateLimits {
            timeout: Duration::from_millis(1),
            fuel: 2_000_000,
            ..TemplateLimits::default()
        };
        let e = render_within(NESTED, json!({}), &limits).unwrap_err();
        assert!(
            matches!(e, TemplateError::TooSlow(_) | TemplateError::Busy(_)),
            "{e}"
        );
    }
}
