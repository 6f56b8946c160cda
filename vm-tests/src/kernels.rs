//! `kernels.toml`: the kernels of the matrix, by short name.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The whole `kernels.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelsFile {
    /// Fallback mirrors, used when the system's apt sources name none.
    #[serde(default)]
    pub mirrors: Mirrors,
    /// Kernels by short name (`"6.1"`).
    #[serde(default)]
    pub kernel: BTreeMap<String, KernelSpec>,
}

/// Archive roots for ordinary suites and for `*-security` suites.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Mirrors {
    /// Archive root for `bookworm`, `bullseye`, ...
    pub debian: String,
    /// Archive root for `bookworm-security`, `bullseye-security`, ...
    pub security: String,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            debian: "http://deb.debian.org/debian".into(),
            security: "http://deb.debian.org/debian-security".into(),
        }
    }
}

/// One kernel: an exact Debian package version in one suite.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Binary package, e.g. `linux-image-6.1.0-56-amd64-unsigned`.
    pub package: String,
    /// Exact package version, e.g. `6.1.192-2`.
    pub version: String,
    /// Apt suite holding it, e.g. `bookworm-security`.
    pub suite: String,
}

impl KernelSpec {
    /// `true` for `*-security` suites, which live under the security archive.
    pub fn is_security(&self) -> bool {
        self.suite.ends_with("-security")
    }

    /// Name of the `.deb` that `apt-get download` writes (`:` in versions becomes `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!("{}_{}_amd64.deb", self.package, self.version.replace(':', "%3a"))
    }

    /// Directory name under the cache for the extracted package.
    pub fn dir_name(&self) -> String {
        format!("{}_{}", self.package, self.version.replace(':', "%3a"))
    }
}

impl KernelsFile {
    /// Parses `kernels.toml` text and checks every entry.
    pub fn parse(text: &str) -> Result<Self> {
        let file: KernelsFile = toml::from_str(text).context("parsing kernels.toml")?;
        for (name, k) in &file.kernel {
            if !k.package.starts_with("linux-image-") {
                bail!("kernel.\"{name}\".package: expected a linux-image-* package, got {:?}", k.package);
            }
            for (field, value) in [("package", &k.package), ("version", &k.version), ("suite", &k.suite)] {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == '=' || c == '/') {
                    bail!("kernel.\"{name}\".{field}: invalid value {value:?}");
                }
            }
        }
        Ok(file)
    }

    /// Reads and parses a `kernels.toml` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The kernel named `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&KernelSpec> {
        self.kernel.get(name).with_context(|| {
            let known: Vec<&str> = self.kernel.keys().map(String::as_str).collect();
            format!("unknown kernel {name:?} (kernels.toml has: {})", known.join(", "))
        })
    }

    /// Every suite any kernel needs, sorted and deduplicated.
    pub fn suites(&self) -> std::collections::BTreeSet<String> {
        self.kernel.values().map(|k| k.suite.clone()).collect()
    }
}
