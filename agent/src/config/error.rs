//! Configuration errors and warnings.
//!
//! Both name the key path (`prometheus_export.port`) and where the value came from: a file
//! position, an environment variable, or a `--set` override.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// The YAML file; line and column are 1-based and known when the key could be located.
    File {
        /// Path of the file as given.
        path: PathBuf,
        /// Line of the key, if known.
        line: Option<usize>,
        /// Column of the key, if known.
        column: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// Variable name, e.g. `BEYLA_PROMETHEUS_PORT`.
        var: String,
    },
    /// A command-line override (`--set key=value`).
    Cli {
        /// Dotted key path as given.
        key: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line: Some(l), column: Some(c) } => {
                write!(f, "{}:{l}:{c}", path.display())
            }
            Origin::File { path, line: Some(l), column: None } => write!(f, "{}:{l}", path.display()),
            Origin::File { path, .. } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Cli { key } => write!(f, "--set {key}"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("invalid yaml: {message} ({origin})")]
    Syntax {
        /// Parser message.
        message: String,
        /// File position.
        origin: Origin,
    },
    /// A key that no section knows.
    #[error("{key}: unknown key ({origin}); expected {expected}")]
    UnknownKey {
        /// Dotted path of the unknown key.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The keys accepted at that place, e.g. "one of `instrument`, `services`".
        expected: String,
    },
    /// A value of the wrong type or out of range in the file or in the merged configuration.
    #[error("{key}: {message} ({origin})")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
        /// Where the value came from.
        origin: Origin,
    },
    /// An environment variable whose value does not fit its key.
    #[error("{var}: invalid value {value:?}: {message} (environment variable)")]
    Env {
        /// Variable name.
        var: String,
        /// Dotted key the variable sets.
        key: String,
        /// Raw value.
        value: String,
        /// What is wrong, e.g. "expected u16".
        message: String,
    },
    /// A command-line override whose value does not fit its key.
    #[error("--set {key}: invalid value {value:?}: {message}")]
    Cli {
        /// Dotted key path.
        key: String,
        /// Raw value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line override that is not `key=value` or names no key.
    #[error("--set {key}: {message}")]
    CliKey {
        /// Dotted key path as given.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Several errors, in the order they were found (each as above): a file's wrong types and
    /// unknown keys, or the rules between keys that fail once the layers are merged.
    #[error("{} errors in the configuration:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
    /// Merging the layers failed after each was validated (a bug rather than a user error).
    #[error("merging configuration layers failed")]
    Merge(#[source] Box<figment::Error>),
}

impl ConfigError {
    /// The dotted key path the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Env { key, .. }
            | ConfigError::Cli { key, .. }
            | ConfigError::CliKey { key, .. } => Some(key),
            ConfigError::Many(errors) => errors.first().and_then(ConfigError::key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::Merge(_) => None,
        }
    }
}

/// Something the agent accepts but that the user should know about: a feature that is not
/// built yet, a deprecated key, an unknown `BEYLA_*` variable.
///
/// Returned as data by [`load`](super::load); the binary decides how to log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Dotted key path (or the variable name for unknown variables).
    pub key: String,
    /// Where the key was set.
    pub origin: Origin,
    /// What the agent does about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.key, self.message, self.origin)
    }
}
