//! A rule's template: checked as at rule creation, then rendered against a notification with
//! the fuel and size limits. Any template must be refused or render within the limits — never
//! panic, never run past its fuel, never make a message over the size limit.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pipeline::generate::{TemplateLimits, render};
use serde_json::json;

fuzz_target!(|template: &str| {
    let limits = TemplateLimits {
        fuel: 20_000,
        max_bytes: 4096,
        timeout: Duration::from_secs(1),
    };
    let context = json!({
        "rule": {"id": "big", "name": "Big order"},
        "event": {"id": "o1", "type": "order", "ts": 1_764_547_200_000i64,
                  "attrs": {"amount": 2_000_000, "channel": "naver", "items": [1, 2, 3]}},
        "group": {"channel": "naver"},
        "value": 12.5, "change_percent": -31.2, "state": "FIRING",
    });
    if let Ok(message) = render(template, &context, &limits) {
        assert!(message.len() <= limits.max_bytes, "{} bytes", message.len());
    }
});
