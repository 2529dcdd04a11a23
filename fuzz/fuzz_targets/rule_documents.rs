//! A rule document of `POST /v1/rules`: parsed and compiled the way the API does. Any input
//! must be accepted or refused with an error, never panic; an accepted rule must compile to the
//! same rule again from its own JSON (what the store keeps and recovery reads back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use operators::{CompiledRule, RuleSpec};

fuzz_target!(|body: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<RuleSpec>(body) else {
        return;
    };
    let Ok(compiled) = CompiledRule::compile(&spec, "fuzz-shop", "r1", 1, "Asia/Seoul") else {
        return;
    };
    let stored = serde_json::to_string(&spec).expect("a parsed spec serializes");
    let again: RuleSpec = serde_json::from_str(&stored).expect("the stored form parses");
    let recompiled = CompiledRule::compile(&again, "fuzz-shop", "r1", 1, "Asia/Seoul")
        .expect("the stored form compiles");
    assert_eq!(compiled.rule, recompiled.rule);
});
