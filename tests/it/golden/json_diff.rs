//! Comparison of a built body with a captured one, modulo what the golden tests forgive:
//! key casing (SDK 3.4.0 leaks snake_case keys, spec §3) and number spelling (`1` vs
//! `1.0`). Differences come back as JSON paths so a failure names the field.

use serde_json::{Map, Number, Value};

/// `mime_type` → `mimeType`; keys already in camelCase are kept.
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Every object key in camelCase and every number as a float, recursively.
pub fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (camel_case(k), normalise(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        other => other.clone(),
    }
}

/// The paths where `got` differs from `want` (both already normalised).
pub fn differences(want: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", want, got, &mut out);
    out
}

fn walk(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}/{k}");
                match g.get(k) {
                    Some(gv) => walk(&p, wv, gv, out),
                    None => out.push(format!("{p}: missing (capture has {})", short(wv))),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}/{k}: not in capture (built {})", short(gv)));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                walk(&format!("{path}/{i}"), wv, gv, out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!(
            "{}: capture has {}, built {}",
            if path.is_empty() { "/" } else { path },
            short(want),
            short(got)
        )),
    }
}

/// A value for a one-line message: long strings (base64) are cut.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[test]
fn normalising_forgives_key_casing_and_number_spelling_only() {
    let sdk = serde_json::json!({"inlineData": {"mime_type": "image/png"}, "seed": 1.0});
    let ours = serde_json::json!({"inlineData": {"mimeType": "image/png"}, "seed": 1});
    assert_eq!(normalise(&sdk), normalise(&ours));
    let other = serde_json::json!({"inlineData": {"mimeType": "image/jpeg"}, "seed": 1});
    assert_eq!(
        differences(&normalise(&sdk), &normalise(&other)),
        vec![r#"/inlineData/mimeType: capture has "image/png", built "image/jpeg""#]
    );
}
