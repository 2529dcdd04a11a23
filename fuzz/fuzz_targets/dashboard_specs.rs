//! A dashboard spec of `POST /v1/query`, parsed and validated against the built-in commerce
//! model the way the engine does before compiling it. Any JSON must be accepted or refused
//! with an error, never panic.
#![no_main]

use std::sync::LazyLock;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use sql::model::SemanticModel;

const MODEL: &str = include_str!("../../sql/models/commerce.toml");

static COMMERCE: LazyLock<SemanticModel> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("tidemark-fuzz-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("model directory");
    let path = dir.join("commerce.toml");
    std::fs::write(&path, MODEL).expect("model file");
    SemanticModel::load(&[path]).expect("the built-in model loads")
});

fuzz_target!(|body: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let _ = sql::spec::parse(&COMMERCE, &spec, now);
});
