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
use super::keys::{clean_message, insert, probe, unknown_field_expected, ProbeError};
use super::locate::locate;
use super::provenance::{Layer, Provenance};
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

    let text = match &file {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?)
        }
        None => None,
    };
    load_text(src, file, text)
}

/// Loads `text` as if read from a file called `name`, with `src`'s environment and overrides:
/// the loader without the file system (fuzzing, tests).
pub fn load_str(src: &Sources<'_>, name: &Path, text: &str) -> Result<Loaded, ConfigError> {
    load_text(src, Some(name.to_path_buf()), Some(text.to_string()))
}

fn load_text(src: &Sources<'_>, file: Option<PathBuf>, text: Option<String>) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    let mut provenance = Provenance::default();

    if let (Some(path), Some(text)) = (&file, text) {
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

/// Every key path `value` sets (leaves only).
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

/// At most this many errors of one file are reported.
const MAX_FILE_ERRORS: usize = 20;

/// Every error of the file at once, not only the first: after each error the key it names is
/// taken out of the document and the rest is read again.
fn check_yaml(text: &str, path: &Path) -> Result<(), ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let (first_key, first) = match serde_path_to_error::deserialize::<_, Config>(de) {
        Ok(_) => return Ok(()),
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
            (key.clone(), classify(key, message, origin))
        }
    };
    let mut errors = vec![first];
    // A document that is not YAML, or an error of the whole document, is one error.
    if let Ok(mut tree) = serde_yaml::from_str::<Value>(text) {
        let mut key = first_key;
        while errors.len() < MAX_FILE_ERRORS && remove_path(&mut tree, &key) {
            let Err(e) = serde_path_to_error::deserialize::<_, Config>(tree.clone()) else { break };
            if e.path().to_string() == key {
                // Taking it out did not help (an emptied list item that is not a mapping).
                break;
            }
            key = e.path().to_string();
            let message = clean_message(&e.inner().to_string(), &key, None);
            let pos = locate(text, &key);
            let origin = Origin::File { path: path.to_path_buf(), line: pos.map(|p| p.0), column: pos.map(|p| p.1) };
            errors.push(classify(key.clone(), message, origin));
        }
    }
    Err(if errors.len() == 1 { errors.remove(0) } else { ConfigError::Many(errors) })
}

/// Removes the value at a serde_path_to_error path (`a.b[2].c`) from `tree`; false when there
/// is none (or the path is the whole document).
fn remove_path(tree: &mut Value, path: &str) -> bool {
    if path.is_empty() || path == "." {
        return false;
    }
    // Segments: map keys and sequence indices, in order.
    let mut steps: Vec<Result<&str, usize>> = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            steps.push(Ok(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            let Ok(i) = index.parse() else { return false };
            steps.push(Err(i));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    let Some((last, parents)) = steps.split_last() else { return false };
    let mut node = tree;
    for step in parents {
        node = match (step, node) {
            (Ok(k), Value::Mapping(m)) => match m.get_mut(*k) {
                Some(v) => v,
                None => return false,
            },
            (Err(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Ok(k), Value::Mapping(m)) => m.remove(*k).is_some(),
        (Err(i), Value::Sequence(s)) if *i < s.len() => {
            // Emptied, not removed: the indices of later items stay those of the file.
            s[*i] = Value::Mapping(Mapping::new());
            true
        }
        _ => false,
    }
}

fn syntax_error(e: &serde_yaml::Error, path: &Path) -> ConfigError {
    ConfigError::Syntax { message: clean_message(&e.to_string(), "", e.location()), origin: file_origin(path, e) }
}

fn file_origin(path: &Path, e: &serde_yaml::Error) -> Origin {
    let loc = e.location();
    Origin::File { path: path.to_path_buf(), line: loc.as_ref().map(|l| l.line()), column: loc.map(|l| l.column()) }
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
