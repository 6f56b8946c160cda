//! Loading: defaults < YAML file < environment < command-line overrides, merged with figment.
//!
//! Each layer is validated on its own before the merge, so an error names the key and where
//! it was written: the YAML text is deserialised with `serde_path_to_error` (key path plus
//! `file:line:column`), and every environment or `--set` value is checked against its key in
//! isolation (naming the variable or the override).

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Yaml};
use figment::Figment;
use serde_yaml::{Mapping, Value};

use super::env::{self, CONFIG_PATH_VAR};
use super::error::{ConfigError, ConfigWarning, Origin};
use super::locate::locate;
use super::validate;
use super::Config;

/// Where to read the configuration from.
#[derive(Debug, Clone, Default)]
pub struct Sources<'a> {
    /// YAML file (`--config`); when `None`, `BEYLA_CONFIG_PATH` from `env` is used.
    pub file: Option<&'a Path>,
    /// The environment, passed in explicitly (the binary passes `std::env::vars()`).
    pub env: &'a [(String, String)],
    /// Command-line overrides: dotted key path and raw value, e.g.
    /// `("prometheus_export.port", "9400")`. The value is read as YAML (`[a, b]` is a list),
    /// or as plain text when that does not fit the key.
    pub cli: Vec<(String, String)>,
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated configuration.
    pub config: Config,
    /// Accepted-but-ignored features, deprecated keys, unknown `BEYLA_*` variables.
    pub warnings: Vec<ConfigWarning>,
    /// The YAML file that was read, if any.
    pub file: Option<PathBuf>,
}

/// Loads and validates the configuration from all layers.
pub fn load(src: &Sources<'_>) -> Result<Loaded, ConfigError> {
    let file: Option<PathBuf> = match src.file {
        Some(path) => Some(path.to_path_buf()),
        None => src
            .env
            .iter()
            .rev()
            .find(|(k, v)| k == CONFIG_PATH_VAR && !v.trim().is_empty())
            .map(|(_, v)| PathBuf::from(v)),
    };

    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    let mut provenance = Provenance::default();

    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        check_yaml(&text, path)?;
        let tree: Value = serde_yaml::from_str(&text).map_err(|e| syntax_error(&e, path))?;
        let mut leaves = Vec::new();
        collect_leaves(&tree, String::new(), &mut leaves);
        provenance.entries.extend(leaves.into_iter().map(|p| (p, Layer::File)));
        if !matches!(tree, Value::Null) {
            figment = figment.merge(Yaml::string(&text));
        }
        provenance.file = Some((path.clone(), text));
    }

    let env_layer = env::read(src.env)?;
    let mut warnings = env_layer.warnings;
    let mut env_tree = Value::Mapping(Mapping::new());
    for item in env_layer.values {
        insert(&mut env_tree, item.key, item.value);
        if let Origin::Env { var } = item.origin {
            provenance.entries.push((item.key.to_string(), Layer::Env(var)));
        }
    }
    for (key, _, origin) in &env_layer.env_only {
        if let Origin::Env { var } = origin {
            provenance.entries.push((key.to_string(), Layer::Env(var.clone())));
        }
    }
    figment = figment.merge(Serialized::defaults(env_tree));

    let mut cli_tree = Value::Mapping(Mapping::new());
    for (key, raw) in &src.cli {
        check_cli_key(key)?;
        let value = probe(key, &cli_candidates(raw)).map_err(|e| match e {
            ProbeError::Invalid(message) => ConfigError::Cli { key: key.clone(), value: raw.clone(), message },
            ProbeError::UnknownKey { key: unknown, expected } => {
                ConfigError::UnknownKey { key: unknown, origin: Origin::Cli { key: key.clone() }, expected }
            }
        })?;
        insert(&mut cli_tree, key, value);
        provenance.entries.push((key.clone(), Layer::Cli(key.clone())));
    }
    figment = figment.merge(Serialized::defaults(cli_tree));

    let mut config: Config = figment.extract().map_err(|e| ConfigError::Merge(Box::new(e)))?;
    for (key, value, _) in &env_layer.env_only {
        env::apply_env_only(&mut config, key, value);
    }
    warnings.extend(validate::finish(&mut config, &provenance)?);
    Ok(Loaded { config, warnings, file })
}

/// Loads only `path` (no environment, no overrides), for `beyla config check FILE`.
pub fn check_file(path: &Path) -> Result<Loaded, ConfigError> {
    load(&Sources { file: Some(path), env: &[], cli: Vec::new() })
}

// ---------------------------------------------------------------------------------------------
// Provenance: which layer set which key
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum Layer {
    File,
    Env(String),
    Cli(String),
}

/// The keys each layer set, in layer order, to name the origin of a merged value.
#[derive(Debug, Default)]
pub(crate) struct Provenance {
    pub file: Option<(PathBuf, String)>,
    pub entries: Vec<(String, Layer)>,
}

fn related(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        long.len() > short.len() && long.starts_with(short) && matches!(long.as_bytes()[short.len()], b'.' | b'[')
    };
    a == b || under(a, b) || under(b, a)
}

impl Provenance {
    /// Origin of the value at `key`: the last layer that set it, a key under it, or a key
    /// above it.
    pub fn origin_of(&self, key: &str) -> Origin {
        let mut probe = key;
        loop {
            if let Some((_, layer)) = self.entries.iter().rev().find(|(p, _)| related(p, probe)) {
                return self.origin(layer, key);
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe = &probe[..i],
                None => return Origin::Default,
            }
        }
    }

    /// Every key set by a layer, with the layer, in layer order.
    pub fn set_keys(&self) -> impl Iterator<Item = (&str, &Layer)> + '_ {
        self.entries.iter().map(|(p, layer)| (p.as_str(), layer))
    }

    /// Origin of `key` as set by `layer` (for the file: the position of `key`).
    pub fn origin(&self, layer: &Layer, key: &str) -> Origin {
        match layer {
            Layer::File => match &self.file {
                Some((path, text)) => {
                    let pos = locate(text, key);
                    Origin::File { path: path.clone(), line: pos.map(|p| p.0), column: pos.map(|p| p.1) }
                }
                None => Origin::Default,
            },
            Layer::Env(var) => Origin::Env { var: var.clone() },
            Layer::Cli(k) => Origin::Cli { key: k.clone() },
        }
    }
}

fn collect_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                collect_leaves(v, join(&key), out);
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            for (i, v) in s.iter().enumerate() {
                collect_leaves(v, format!("{path}[{i}]"), out);
            }
        }
        Value::Tagged(t) => collect_leaves(&t.value, path, out),
        // `key:` with no value, `{}` and `[]` set nothing worth a warning
        Value::Null | Value::Mapping(_) | Value::Sequence(_) => {}
        _ if !path.is_empty() => out.push(path),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// YAML errors
// ---------------------------------------------------------------------------------------------

fn check_yaml(text: &str, path: &Path) -> Result<(), ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Config>(de) {
        Ok(_) => Ok(()),
        Err(e) => {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut origin = file_origin(path, &inner);
            // serde_yaml places errors raised by a value's own Deserialize impl at an
            // ancestor (the enclosing key or sequence); point at the key itself when found.
            if let (Origin::File { line: Some(line), column, .. }, Some((l, c))) = (&mut origin, locate(text, &key)) {
                if l > *line {
                    *line = l;
                    *column = Some(c);
                }
            }
            let message = clean_message(&inner.to_string(), &key, inner.location());
            Err(classify(key, message, origin))
        }
    }
}

fn syntax_error(e: &serde_yaml::Error, path: &Path) -> ConfigError {
    ConfigError::Syntax { message: clean_message(&e.to_string(), "", e.location()), origin: file_origin(path, e) }
}

fn file_origin(path: &Path, e: &serde_yaml::Error) -> Origin {
    let loc = e.location();
    Origin::File { path: path.to_path_buf(), line: loc.as_ref().map(|l| l.line()), column: loc.map(|l| l.column()) }
}

/// Removes serde_yaml's ` at line L column C` suffix and its `path: ` prefix.
fn clean_message(raw: &str, key: &str, loc: Option<serde_yaml::Location>) -> String {
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

fn classify(key: String, message: String, origin: Origin) -> ConfigError {
    if let Some(expected) = unknown_field_expected(&message) {
        return ConfigError::UnknownKey { key, origin, expected };
    }
    if key.is_empty() || key == "." {
        return ConfigError::Syntax { message, origin };
    }
    ConfigError::Invalid { key, message, origin }
}

/// For serde's "unknown field `x`, expected ..." message, the expected part, with a
/// suggestion when one of the expected names is close to `x`.
fn unknown_field_expected(message: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Single-key validation (environment and --set)
// ---------------------------------------------------------------------------------------------

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

/// `raw` read as any YAML value, then as plain text.
fn cli_candidates(raw: &str) -> Vec<Value> {
    let text = Value::String(raw.to_string());
    match serde_yaml::from_str::<Value>(raw) {
        Ok(Value::String(_)) | Err(_) => vec![text],
        Ok(parsed) => vec![parsed, text],
    }
}

fn check_cli_key(key: &str) -> Result<(), ConfigError> {
    if key.is_empty() || key.split('.').any(|s| s.trim().is_empty() || s.contains(['[', ']', ' '])) {
        return Err(ConfigError::CliKey {
            key: key.to_string(),
            message: "expected a dotted key path like prometheus_export.port".to_string(),
        });
    }
    Ok(())
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
