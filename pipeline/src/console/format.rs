//! Numbers, money and instants as the tenant reads them: digit grouping and decimal mark of its
//! locale, its currency's symbol and minor units (KRW and JPY have none), instants in its time
//! zone.
//!
//! The table covers the locales and currencies of the shops Tidemark is used by; an unknown
//! locale reads as `en`, an unknown currency shows its ISO code with two decimals.

use chrono::TimeZone;
use chrono_tz::Tz;

/// How one tenant reads numbers and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefs {
    /// A BCP 47 tag, e.g. `ko-KR`, `en-US`, `de-DE`.
    pub locale: String,
    /// An ISO 4217 code, e.g. `KRW`.
    pub currency: String,
    /// An IANA zone.
    pub time_zone: Tz,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            locale: "en-US".into(),
            currency: "USD".into(),
            time_zone: Tz::UTC,
        }
    }
}

/// A locale's separators: (grouping, decimal mark).
fn separators(locale: &str) -> (&'static str, &'static str) {
    let language = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match language.as_str() {
        "de" | "es" | "it" | "nl" | "pt" | "id" | "tr" | "da" | "el" | "vi" => (".", ","),
        // A narrow no-break space, as CLDR has it.
        "fr" | "ru" | "sv" | "pl" | "cs" | "fi" | "nb" | "no" | "uk" | "sk" | "hu" => {
            ("\u{202f}", ",")
        }
        _ => (",", "."),
    }
}

/// A currency's symbol, whether it goes after the number in `locale`, and its minor units.
fn currency(code: &str, locale: &str) -> (String, bool, usize) {
    let code = code.to_ascii_uppercase();
    let (symbol, decimals) = match code.as_str() {
        "KRW" => ("₩", 0),
        "JPY" => ("¥", 0),
        "VND" => ("₫", 0),
        "CLP" | "ISK" | "PYG" | "UGX" => ("", 0),
        "USD" => ("$", 2),
        "EUR" => ("€", 2),
        "GBP" => ("£", 2),
        "CNY" => ("¥", 2),
        "INR" => ("₹", 2),
        _ => ("", 2),
    };
    let symbol = if symbol.is_empty() {
        code.clone()
    } else {
        symbol.to_string()
    };
    let (_, decimal) = separators(locale);
    // Locales with a decimal comma put the symbol after the number (`1.234,50 €`).
    (symbol, decimal == ",", decimals)
}

impl Prefs {
    /// `value` with `decimals` fraction digits, grouped as the locale groups.
    fn grouped(&self, value: f64, decimals: usize) -> String {
        let (group, mark) = separators(&self.locale);
        let text = format!("{:.*}", decimals, value.abs());
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text.as_str(), None),
        };
        let mut out = String::with_capacity(text.len() + 8);
        if value < 0.0 && text.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
            out.push('-');
        }
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                out.push_str(group);
            }
            out.push(c);
        }
        if let Some(f) = fraction {
            out.push_str(mark);
            out.push_str(f);
        }
        out
    }

    /// A number in a table: whole numbers without a fraction, others with two decimals (none
    /// from 1,000 up).
    pub fn number(&self, value: f64) -> String {
        if !value.is_finite() {
            return String::new();
        }
        let decimals = if value.fract() == 0.0 || value.abs() >= 1000.0 {
            0
        } else {
            2
        };
        self.grouped(value, decimals)
    }

    /// An amount of the tenant's currency (`₩1,234,500`, `$12.50`, `1.234,50 €`).
    pub fn money(&self, value: f64) -> String {
        if !value.is_finite() {
            return String::new();
        }
        let (symbol, after, decimals) = currency(&self.currency, &self.locale);
        let number = self.grouped(value, decimals);
        if after {
            format!("{number}\u{a0}{symbol}")
        } else if let Some(unsigned) = number.strip_prefix('-') {
            format!("-{symbol}{unsigned}")
        } else {
            format!("{symbol}{number}")
        }
    }

    /// A share (0.25 → `25.0 %`).
    pub fn percent(&self, value: f64) -> String {
        if !value.is_finite() {
            return String::new();
        }
        format!("{}\u{a0}%", self.grouped(value * 100.0, 1))
    }

    /// An instant (milliseconds since the epoch) in the tenant's zone: `2026-12-04 09:30`.
    pub fn instant(&self, ms: i64) -> String {
        match self.time_zone.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => String::new(),
        }
    }

    /// The zone's abbreviation now (`KST`), shown beside instants.
    pub fn zone_name(&self) -> String {
        self.time_zone.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(locale: &str, currency: &str) -> Prefs {
        Prefs {
            locale: locale.into(),
            currency: currency.into(),
            time_zone: "Asia/Seoul".parse().unwrap(),
        }
    }

    #[test]
    fn won_has_no_decimals() {
        let p = prefs("ko-KR", "KRW");
        assert_eq!(p.money(1_234_567.89), "₩1,234,568");
        assert_eq!(p.money(-5000.0), "-₩5,000");
        assert_eq!(p.number(0.5), "0.50");
    }

    #[test]
    fn euros_in_german_put_the_symbol_after_a_decimal_comma() {
        let p = prefs("de-DE", "EUR");
        assert_eq!(p.money(1234.5), "1.234,50\u{a0}€");
        assert_eq!(p.number(1234567.0), "1.234.567");
        assert_eq!(p.percent(0.125), "12,5\u{a0}%");
    }

    #[test]
    fn dollars_in_english() {
        let p = prefs("en-US", "USD");
        assert_eq!(p.money(12.5), "$12.50");
        assert_eq!(p.money(-0.001), "$0.00");
        assert_eq!(prefs("en", "CHF").money(3.0), "CHF3.00");
    }

    #[test]
    fn instants_are_in_the_tenants_zone() {
        let p = prefs("ko-KR", "KRW");
        // 2026-12-04T00:30:00Z is 09:30 in Seoul.
        assert_eq!(p.instant(1_796_344_200_000), "2026-12-04 09:30:00");
    }
}
