//! Checks JSON against the official GA4 Data API discovery document
//! (`shared/ga4/analyticsdata.v1beta.json`): every member must be declared by its schema, have
//! the declared JSON type (`int64` is a string of digits, `int32` an integer), and enum members
//! must be one of the listed values.

use serde_json::Value;

/// The parsed discovery document.
pub struct Discovery {
    doc: Value,
}

impl Discovery {
    /// Loads the document from the shared folder beside the repository.
    pub fn load() -> Discovery {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/ga4/analyticsdata.v1beta.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("discovery document {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("discovery document is JSON");
        assert_eq!(doc["revision"], "20261006", "discovery document revision");
        Discovery { doc }
    }

    /// The method whose HTTP verb and `flatPath` match, with its request schema name.
    pub fn method(&self, verb: &str, path: &str) -> Option<(String, Option<String>)> {
        let methods = self.doc["resources"]["properties"]["methods"].as_object()?;
        for (name, m) in methods {
            if m["httpMethod"] != verb {
                continue;
            }
            let flat = m["flatPath"].as_str()?;
            if path_matches(flat, path) {
                let request = m["request"]["$ref"].as_str().map(str::to_string);
                return Some((name.clone(), request));
            }
        }
        None
    }

    /// Validates `value` against schema `name`; the violations, each with its JSON path.
    pub fn validate(&self, name: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check_ref(name, value, "$", &mut errors);
        errors
    }

    fn check_ref(&self, name: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
        match self.doc["schemas"].get(name) {
            Some(schema) => self.check(schema, value, at, errors),
            None => errors.push(format!(
                "{at}: schema {name} is not in the discovery document"
            )),
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema["$ref"].as_str() {
            return self.check_ref(r, value, at, errors);
        }
        let ty = schema["type"].as_str().unwrap_or("any");
        match ty {
            "object" => {
                let Some(obj) = value.as_object() else {
                    return errors.push(format!("{at}: expected an object, got {value}"));
                };
                let props = schema["properties"].as_object();
                for (k, v) in obj {
                    match props.and_then(|p| p.get(k)) {
                        Some(s) => self.check(s, v, &format!("{at}.{k}"), errors),
                        None => match schema.get("additionalProperties") {
                            Some(s) => self.check(s, v, &format!("{at}.{k}"), errors),
                            None => errors.push(format!("{at}: unknown field {k:?}")),
                        },
                    }
                }
            }
            "array" => {
                let Some(items) = value.as_array() else {
                    return errors.push(format!("{at}: expected an array, got {value}"));
                };
                for (i, v) in items.iter().enumerate() {
                    self.check(&schema["items"], v, &format!("{at}[{i}]"), errors);
                }
            }
            "string" => {
                let Some(s) = value.as_str() else {
                    return errors.push(format!("{at}: expected a string, got {value}"));
                };
                match schema["format"].as_str() {
                    Some("int64") | Some("uint64") if s.parse::<i64>().is_err() => {
                        errors.push(format!("{at}: {s:?} is not an int64 string"))
                    }
                    _ => {}
                }
                if let Some(allowed) = schema["enum"].as_array()
                    && !allowed.iter().any(|a| a == value)
                {
                    errors.push(format!("{at}: {s:?} is not one of {allowed:?}"));
                }
            }
            "integer" => {
                if !(value.is_i64() || value.is_u64()) {
                    errors.push(format!("{at}: expected an integer, got {value}"));
                }
            }
            "number" => {
                if !value.is_number() {
                    errors.push(format!("{at}: expected a number, got {value}"));
                }
            }
            "boolean" => {
                if !value.is_boolean() {
                    errors.push(format!("{at}: expected a boolean, got {value}"));
                }
            }
            "any" => {}
            other => errors.push(format!("{at}: schema type {other} is not supported")),
        }
    }
}

/// Whether `path` fits a `flatPath` such as `v1beta/properties/{propertiesId}:runReport`.
fn path_matches(flat: &str, path: &str) -> bool {
    let mut rest = path;
    let mut pattern = flat;
    while let Some(open) = pattern.find('{') {
        let (lit, after) = pattern.split_at(open);
        let Some(stripped) = rest.strip_prefix(lit) else {
            return false;
        };
        let close = after.find('}').unwrap_or(after.len() - 1);
        pattern = &after[close + 1..];
        // A parameter is one path segment up to the next literal character.
        let stop = pattern.chars().next();
        let end = stripped
            .find(|c: char| c == '/' || Some(c) == stop)
            .unwrap_or(stripped.len());
        if end == 0 {
            return false;
        }
        rest = &stripped[end..];
    }
    rest == pattern
}
