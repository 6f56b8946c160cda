//! Dotted key paths: setting a value at a key, checking one value against its key alone
//! (environment variables and `--set`), and serde's messages made readable. Shared by the
//! file, environment and command-line layers.

use serde_yaml::{Mapping, Value};

use super::Config;

/// Removes serde_yaml's ` at line L column C` suffix and its `path: ` prefix.
pub(crate) fn clean_message(raw: &str, key: &str, loc: Option<serde_yaml::Location>) -> String {
    let mut msg = raw;
    if let Some(l) = loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        msg = msg.strip_suffix(&suffix).unwrap_or(msg);
    }
    let mut prefix = key;
    while !prefix.is_empty() && prefix != "." {
        if let Some(rest) = msg.strip_prefix(prefix).and_then(|r| r.strip_prefix(": ")) {
            return rest.to_string();
        }
        prefix = match prefix.rfind(['.', '[']) {
            Some(i) => &prefix[..i],
            None => "",
        };
    }
    msg.to_string()
}

/// For serde's "unknown field `x`, expected ..." message, the expected part, with a
/// suggestion when one of the expected names is close to `x`.
pub(crate) fn unknown_field_expected(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = match rest.split_once("expected ") {
        Some((_, e)) => e.to_string(),
        None => "no keys here".to_string(),
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = names.iter().map(|n| (edit_distance(field, n), *n)).filter(|(d, n)| *d <= 2.max(n.len() / 4)).min();
    Some(match best {
        Some((_, name)) if names.len() > 1 => format!("{expected} (did you mean `{name}`?)"),
        _ => expected,
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Why a single value does not fit its key.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The key (or one of its parents) does not exist.
    UnknownKey { key: String, expected: String },
    /// The value does not fit, e.g. "expected u16".
    Invalid(String),
}

/// Checks `candidates` one after the other against `key` and returns the first that fits;
/// the error is the first candidate's.
pub(crate) fn probe(key: &str, candidates: &[Value]) -> Result<Value, ProbeError> {
    let mut first_error = None;
    for candidate in candidates {
        let mut tree = Value::Mapping(Mapping::new());
        insert(&mut tree, key, candidate.clone());
        match serde_path_to_error::deserialize::<_, Config>(tree) {
            Ok(_) => return Ok(candidate.clone()),
            Err(e) => {
                let path = e.path().to_string();
                let message = clean_message(&e.inner().to_string(), &path, None);
                let error = match unknown_field_expected(&message) {
                    Some(expected) => ProbeError::UnknownKey { key: path, expected },
                    None => ProbeError::Invalid(short_message(&message)),
                };
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(ProbeError::Invalid("no value".to_string())))
}

/// "invalid type: string \"abc\", expected u16" -> "expected u16" (the value is shown apart).
fn short_message(message: &str) -> String {
    if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        if let Some((_, expected)) = message.split_once(", expected ") {
            return format!("expected {expected}");
        }
    }
    message.to_string()
}

/// Sets `value` at dotted `key` inside the mapping `tree`, creating parents.
pub(crate) fn insert(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if !matches!(node, Value::Mapping(_)) {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let k = Value::String(part.to_string());
        if parts.peek().is_none() {
            map.insert(k, value);
            return;
        }
        node = map.entry(k).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_serde_yaml_decorations() {
        let loc = serde_yaml::from_str::<u16>("x").err().and_then(|e| e.location());
        let raw = "prometheus_export: invalid duration \"5\" at line 1 column 1";
        assert_eq!(clean_message(raw, "prometheus_export.ttl", loc), "invalid duration \"5\"");
        assert_eq!(short_message("invalid type: string \"abc\", expected u16"), "expected u16");
    }

    #[test]
    fn unknown_fields_suggest_close_names() {
        let e = unknown_field_expected("unknown field `instrumnet`, expected one of `instrument`, `services`")
            .expect("unknown");
        assert_eq!(e, "one of `instrument`, `services` (did you mean `instrument`?)");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn insert_builds_nested_maps() {
        let mut t = Value::Mapping(Mapping::new());
        insert(&mut t, "a.b", Value::Bool(true));
        insert(&mut t, "a.c", Value::Bool(false));
        assert_eq!(serde_yaml::to_string(&t).expect("yaml"), "a:\n  b: true\n  c: false\n");
    }
}
