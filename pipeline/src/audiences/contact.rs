//! A contact's document as the API and `customer.*` events give it, checked field by field.
//!
//! ```json
//! {"email": "kim@example.com", "locale": "ko-KR", "time_zone": "Asia/Seoul",
//!  "consent": {"email": true, "sms": false}, "attributes": {"tier": "vip"}}
//! ```
//!
//! A `customer.created` or `customer.updated` event changes the contact its `customer_id`
//! names: its attributes `email`, `locale`, `time_zone` and `consent.<channel>` (a boolean) set
//! those fields, every other attribute sets the attribute of that name; `customer.deleted`
//! deletes the contact.

use operators::audience::Contact;
use operators::{AttrValue, Event};
use serde_json::Value;

/// Longest contact id, email, locale or time zone, bytes.
const MAX_FIELD_BYTES: usize = 254;
/// Most attributes a contact may carry.
const MAX_ATTRIBUTES: usize = 200;

/// A field of a contact document that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ContactError {
    /// The field, e.g. `email` or `attributes.tier`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ContactError {
    ContactError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks a contact id: 1 to 128 bytes of letters, digits, `-`, `_`, `.`, `@`, `+`.
pub fn check_id(id: &str) -> Result<(), ContactError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(err(
            "id",
            format!("'{id}' must be 1 to 128 letters, digits, '-', '_', '.', '@' or '+'"),
        ))
    }
}

fn check_email(email: &str) -> Result<(), ContactError> {
    if email.len() > MAX_FIELD_BYTES {
        return Err(err("email", format!("longer than {MAX_FIELD_BYTES} bytes")));
    }
    connectors::sinks::email::check_address(email).map_err(|e| err("email", e))
}

fn check_time_zone(zone: &str) -> Result<(), ContactError> {
    zone.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        err(
            "time_zone",
            format!("'{zone}' is not an IANA time zone (e.g. Asia/Seoul)"),
        )
    })
}

fn check_locale(locale: &str) -> Result<(), ContactError> {
    // BCP 47 in the shape messages use: a language, then subtags of letters and digits.
    let mut parts = locale.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    let ok = (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(err(
            "locale",
            format!("'{locale}' is not a locale (e.g. ko-KR, en)"),
        ))
    }
}

fn check_attribute(name: &str, value: &Value) -> Result<(), ContactError> {
    if let Some(problem) = Contact::reserved_attribute(name) {
        return Err(err(format!("attributes.{name}"), problem));
    }
    if name.is_empty() || name.len() > 128 {
        return Err(err("attributes", "attribute names are 1 to 128 bytes"));
    }
    if value.is_object() {
        return Err(err(
            format!("attributes.{name}"),
            "must be a string, number, boolean, null or list, not an object",
        ));
    }
    Ok(())
}

/// Every field checked: the contact a document describes.
pub fn parse_contact(document: &Value) -> Result<Contact, ContactError> {
    let obj = document
        .as_object()
        .ok_or_else(|| err("contact", "must be a JSON object"))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "id" | "email" | "locale" | "time_zone" | "consent" | "attributes"
        ) {
            return Err(err(
                key.clone(),
                "unknown field; expected id, email, locale, time_zone, consent, attributes",
            ));
        }
    }
    let text = |name: &str| -> Result<Option<String>, ContactError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_FIELD_BYTES => Ok(Some(s.clone())),
            Some(Value::String(_)) => {
                Err(err(name, format!("longer than {MAX_FIELD_BYTES} bytes")))
            }
            Some(_) => Err(err(name, "must be a string")),
        }
    };
    let contact = Contact {
        email: text("email")?,
        locale: text("locale")?,
        time_zone: text("time_zone")?,
        consent: match obj.get("consent") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(channel, given)| match given {
                    Value::Bool(b) => Ok((channel.clone(), *b)),
                    _ => Err(err(format!("consent.{channel}"), "must be true or false")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("consent", "must be an object of channel: true/false")),
        },
        attributes: match obj.get("attributes") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(err("attributes", "must be an object")),
        },
    };
    check_contact(&contact)?;
    Ok(contact)
}

/// The checks every stored contact passes, whichever way it came.
pub fn check_contact(contact: &Contact) -> Result<(), ContactError> {
    if let Some(email) = &contact.email {
        check_email(email)?;
    }
    if let Some(zone) = &contact.time_zone {
        check_time_zone(zone)?;
    }
    if let Some(locale) = &contact.locale {
        check_locale(locale)?;
    }
    for channel in contact.consent.keys() {
        if channel.is_empty() || channel.len() > 64 {
            return Err(err("consent", "channel names are 1 to 64 bytes"));
        }
    }
    if contact.attributes.len() > MAX_ATTRIBUTES {
        return Err(err(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (name, value) in &contact.attributes {
        check_attribute(name, value)?;
    }
    Ok(())
}

/// The event types that change contacts.
pub const CUSTOMER_PREFIX: &str = "customer.";

/// What a `customer.*` event makes of its contact (`current`, if it exists): `Some` the
/// contact as it is after the event, `None` deleted. Types other than `customer.created`,
/// `customer.updated` and `customer.deleted` leave it as it is.
pub fn apply_customer_event(
    event: &Event,
    current: Option<Contact>,
) -> Result<Option<Contact>, ContactError> {
    match event.event_type.as_str() {
        "customer.deleted" => return Ok(None),
        "customer.created" | "customer.updated" => {}
        _ => return Ok(current),
    }
    let mut contact = current.unwrap_or_default();
    for (name, value) in event.attrs.iter() {
        let text = match value {
            AttrValue::Str(s) => Some(s.to_string()),
            AttrValue::Null => None,
            _ => Some(String::new()),
        };
        match name.as_str() {
            operators::audience::CONTACT_ATTR => {}
            "email" | "locale" | "time_zone" => {
                if text.as_deref() == Some("") {
                    return Err(err(name.as_str(), "must be a string or null"));
                }
                let field = match name.as_str() {
                    "email" => &mut contact.email,
                    "locale" => &mut contact.locale,
                    _ => &mut contact.time_zone,
                };
                *field = text;
            }
            other => match other.strip_prefix("consent.") {
                Some(channel) => match value {
                    AttrValue::Bool(given) => {
                        contact.consent.insert(channel.to_string(), *given);
                    }
                    _ => return Err(err(other, "must be true or false")),
                },
                None => {
                    contact
                        .attributes
                        .insert(other.to_string(), value.to_json());
                }
            },
        }
    }
    check_contact(&contact)?;
    Ok(Some(contact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_contact_document_is_checked_field_by_field() {
        let ok = parse_contact(&json!({"email": "kim@example.com", "locale": "ko-KR",
            "time_zone": "Asia/Seoul", "consent": {"email": true},
            "attributes": {"tier": "vip"}}))
        .expect("valid");
        assert_eq!(ok.consent.get("email"), Some(&true));
        for (doc, field) in [
            (json!({"email": "not an address"}), "email"),
            (json!({"time_zone": "Mars/Olympus"}), "time_zone"),
            (json!({"locale": "korean please"}), "locale"),
            (json!({"consent": {"email": "yes"}}), "consent.email"),
            (json!({"attributes": {"email": "x"}}), "attributes.email"),
            (
                json!({"attributes": {"address": {"city": "Seoul"}}}),
                "attributes.address",
            ),
            (json!({"phone": "010"}), "phone"),
        ] {
            assert_eq!(
                parse_contact(&doc).expect_err("invalid").field,
                field,
                "{doc}"
            );
        }
    }

    #[test]
    fn customer_events_merge_into_the_contact_and_delete_it() {
        let event = |kind: &str, attrs: serde_json::Value| {
            Event::from_json(
                &json!({"id": "e", "type": kind, "ts": 1, "attrs": attrs}),
                "t",
            )
            .expect("event")
        };
        let first = apply_customer_event(
            &event(
                "customer.created",
                json!({"customer_id": "c1", "email": "a@example.com",
                "consent.email": true, "tier": "gold"}),
            ),
            None,
        )
        .expect("valid")
        .expect("kept");
        assert_eq!(first.email.as_deref(), Some("a@example.com"));
        assert_eq!(first.attributes.get("tier"), Some(&json!("gold")));
        let second = apply_customer_event(
            &event(
                "customer.updated",
                json!({"customer_id": "c1", "consent.email": false}),
            ),
            Some(first),
        )
        .expect("valid")
        .expect("kept");
        assert_eq!(second.consent.get("email"), Some(&false));
        assert_eq!(
            second.email.as_deref(),
            Some("a@example.com"),
            "fields not named stay"
        );
        assert!(
            apply_customer_event(
                &event(
                    "customer.updated",
                    json!({"customer_id": "c1",
                "email": "nope"})
                ),
                Some(second.clone())
            )
            .is_err()
        );
        assert_eq!(
            apply_customer_event(
                &event("customer.deleted", json!({"customer_id": "c1"})),
                Some(second)
            )
            .expect("valid"),
            None
        );
    }
}
