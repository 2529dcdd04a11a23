//! A campaign's definition and its checks.
//!
//! ```json
//! {"id": "winback", "name": "Come back",
//!  "trigger": {"type": "enter", "audience": "lapsing", "delay": "2h"},
//!  "channel": "email", "destination": "crm-mail",
//!  "content": {"subject": "We miss you, {{ contact.first_name }}",
//!              "html": "<p>Hello {{ contact.first_name }}</p>", "text": "Hello {{ contact.first_name }}"},
//!  "frequency_cap": {"max": 1, "per_days": 1},
//!  "quiet_hours": {"from": "21:00", "to": "08:00"}}
//! ```
//!
//! Triggers: `enter` / `leave` an audience (optionally after `delay`, and only if the contact is
//! still in (or still out of) it then); `scheduled`: the members of `audience` at each instant
//! of a cron schedule; or `announcement`: every contact with the channel's consent — or every
//! member of `audience` — `at` an instant (default: when created).
//! Channels: `email` (the destination is an email destination; the recipient is the contact's
//! address) and `webhook` (the destination is a webhook, for SMS, Kakao or push providers; the
//! JSON carries the contact and the rendered `text`), and `slack` for internal announcements
//! (one message to the destination's channel, no contacts). Consent: the contact must have
//! `consent.<consent>` true at send time, where `consent` defaults to `email` for email and
//! must be named for a webhook.

use chrono::{DateTime, NaiveTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::generate::TemplateLimits;
use crate::generate::template;

/// Why a definition is refused: the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct CampaignError {
    /// e.g. `content.html`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn err(field: &str, problem: impl Into<String>) -> CampaignError {
    CampaignError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// What starts a campaign's sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A contact entering an audience.
    Enter {
        audience: String,
        #[serde(default)]
        delay: Option<String>,
    },
    /// A contact leaving an audience.
    Leave {
        audience: String,
        #[serde(default)]
        delay: Option<String>,
    },
    /// The members of `audience` at each instant of a cron schedule (the reports' cron, in
    /// `time_zone`, else the tenant's); after downtime, the latest missed instant only.
    Scheduled {
        cron: String,
        #[serde(default)]
        time_zone: Option<String>,
        audience: String,
    },
    /// Every consenting contact (or every member of `audience`) at `at`.
    Announcement {
        #[serde(default)]
        at: Option<DateTime<Utc>>,
        #[serde(default)]
        audience: Option<String>,
    },
}

/// The channel a message goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
    /// An internal announcement: one message to a Slack channel, not to contacts.
    Slack,
}

impl Channel {
    /// The name sends are keyed by.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Slack => "slack",
        }
    }

    /// Whether messages go to contacts (rather than to the team, once).
    pub fn to_contacts(self) -> bool {
        self != Channel::Slack
    }
}

/// The message's templates (minijinja; `html` auto-escaped).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    pub text: String,
}

/// At most `max` campaign messages per contact in `per_days` calendar days of its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub max: u32,
    #[serde(default = "one")]
    pub per_days: u32,
}

fn one() -> u32 {
    1
}

/// No sends between `from` and `to` (local times of the contact's zone; may span midnight).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub from: String,
    pub to: String,
}

/// A campaign as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub trigger: Trigger,
    pub channel: Channel,
    pub destination: String,
    #[serde(default)]
    pub consent: Option<String>,
    pub content: Content,
    #[serde(default)]
    pub frequency_cap: Option<FrequencyCap>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

/// A context every template is tried against at creation.
pub fn sample_context() -> Value {
    json!({
        "contact": {"id": "c1", "email": "kim@example.com", "locale": "ko-KR",
                    "time_zone": "Asia/Seoul", "first_name": "Kim", "tier": "vip"},
        "campaign": {"id": "sample", "name": "sample"},
        "unsubscribe_url": "https://example.com/unsubscribe/token",
    })
}

impl CampaignSpec {
    /// Reads a definition, naming the field serde stopped at.
    pub fn parse(value: &Value) -> Result<CampaignSpec, CampaignError> {
        serde_json::from_value(value.clone()).map_err(|e| err("campaign", e.to_string()))
    }

    /// The audience it follows or sends to, if any.
    pub fn audience(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Enter { audience, .. }
            | Trigger::Leave { audience, .. }
            | Trigger::Scheduled { audience, .. } => Some(audience),
            Trigger::Announcement { audience, .. } => audience.as_deref(),
        }
    }

    /// The consent channel checked at send time.
    pub fn consent_channel(&self) -> &str {
        self.consent.as_deref().unwrap_or("email")
    }

    /// The trigger's delay, ms.
    pub fn delay_ms(&self) -> i64 {
        match &self.trigger {
            Trigger::Enter { delay, .. } | Trigger::Leave { delay, .. } => delay
                .as_deref()
                .and_then(|d| crate::config::DurationSetting::parse(d).ok())
                .map_or(0, |d| d.as_millis()),
            Trigger::Scheduled { .. } | Trigger::Announcement { .. } => 0,
        }
    }

    /// The quiet hours as local times.
    pub fn quiet_hours(&self) -> Option<(NaiveTime, NaiveTime)> {
        let q = self.quiet_hours.as_ref()?;
        Some((parse_time(&q.from).ok()?, parse_time(&q.to).ok()?))
    }

    /// Every check that needs nothing but the definition: fields, delay, times, templates
    /// (parsed and tried on a sample contact within the template limits).
    pub fn check(&self, limits: &TemplateLimits) -> Result<(), CampaignError> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.len() > 200)
        {
            return Err(err("name", "1 to 200 bytes"));
        }
        if let Trigger::Enter {
            delay: Some(delay), ..
        }
        | Trigger::Leave {
            delay: Some(delay), ..
        } = &self.trigger
        {
            crate::config::DurationSetting::parse(delay).map_err(|e| err("trigger.delay", e))?;
        }
        if let Trigger::Scheduled {
            cron, time_zone, ..
        } = &self.trigger
        {
            operators::schedule::Cron::parse(cron)
                .map_err(|e| err("trigger.cron", e.to_string()))?;
            if let Some(zone) = time_zone {
                zone.parse::<chrono_tz::Tz>().map_err(|_| {
                    err(
                        "trigger.time_zone",
                        format!("'{zone}' is not an IANA time zone"),
                    )
                })?;
            }
        }
        if self.channel == Channel::Slack
            && !matches!(self.trigger, Trigger::Announcement { audience: None, .. })
        {
            return Err(err(
                "trigger",
                "a Slack campaign is an internal announcement: trigger {\"type\": \"announcement\"} without an audience",
            ));
        }
        if self.channel == Channel::Webhook && self.consent.is_none() {
            return Err(err(
                "consent",
                "a webhook campaign names the consent it needs (e.g. \"sms\", \"push\")",
            ));
        }
        if let Some(consent) = &self.consent
            && (consent.is_empty() || consent.len() > 64)
        {
            return Err(err("consent", "1 to 64 bytes"));
        }
        if let Some(cap) = self.frequency_cap {
            if cap.max == 0 {
                return Err(err("frequency_cap.max", "at least 1"));
            }
            if !(1..=365).contains(&cap.per_days) {
                return Err(err("frequency_cap.per_days", "1 to 365"));
            }
        }
        if let Some(q) = &self.quiet_hours {
            let from = parse_time(&q.from).map_err(|e| err("quiet_hours.from", e))?;
            let to = parse_time(&q.to).map_err(|e| err("quiet_hours.to", e))?;
            if from == to {
                return Err(err("quiet_hours", "from and to are the same time"));
            }
        }
        if self.channel == Channel::Email && self.content.subject.is_none() {
            return Err(err("content.subject", "an email needs a subject"));
        }
        let sample = sample_context();
        for (field, text, html) in [
            ("content.subject", self.content.subject.as_deref(), false),
            ("content.html", self.content.html.as_deref(), true),
            ("content.text", Some(self.content.text.as_str()), false),
        ] {
            let Some(text) = text else { continue };
            let checked = if html {
                template::check_html(text, &sample, limits)
            } else {
                template::check(text, std::slice::from_ref(&sample), limits)
            };
            checked.map_err(|e| err(field, e.to_string()))?;
        }
        Ok(())
    }
}

/// `HH:MM`.
fn parse_time(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("'{text}' is not a time of day (HH:MM)"))
}
