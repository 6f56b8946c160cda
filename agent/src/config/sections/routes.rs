//! `routes` section: how URL paths become the low-cardinality `http.route` attribute.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::types::de_list;

/// A route pattern: a URL path whose segments may be `{name}` or `:name` placeholders, or a
/// trailing `*` that matches any suffix (`/user/*` matches `/user`, `/user/1/basket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern(String);

impl RoutePattern {
    /// Validates `text`: it starts with `/`, placeholders are closed and named, and `*` only
    /// appears as a whole segment.
    pub fn new(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid route pattern {text:?}: {why}");
        if !text.starts_with('/') {
            return Err(bad("it must start with `/`"));
        }
        for segment in text.split('/').skip(1) {
            if segment.contains('*') && segment != "*" && segment != "**" {
                return Err(bad("`*` must be a whole path segment"));
            }
            if let Some(name) = segment.strip_prefix(':') {
                if name.is_empty() {
                    return Err(bad("`:` placeholder without a name"));
                }
            }
            let opens = segment.matches('{').count();
            let closes = segment.matches('}').count();
            if opens != closes || opens > 1 {
                return Err(bad("unbalanced `{`/`}` placeholder"));
            }
            if opens == 1 && (!segment.starts_with('{') || !segment.ends_with('}') || segment.len() == 2) {
                return Err(bad("a `{name}` placeholder must be a whole, named path segment"));
            }
        }
        Ok(RoutePattern(text.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RoutePattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoutePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RoutePattern::new(&text).map_err(de::Error::custom)
    }
}

/// What to do with a path that matches no pattern (`routes.unmatched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Leave `http.route` unset.
    Unset,
    /// Use the full path as the route (high cardinality).
    Path,
    /// Use `/**`.
    Wildcard,
    /// Replace ID-like path segments with `wildcard_char` (`/factorial/123` ->
    /// `/factorial/*`). Default, as in current Beyla.
    #[default]
    Heuristic,
    /// Heuristic plus a per-segment cardinality cap (`max_path_segment_cardinality`), as in
    /// recent Beyla/OBI (`low-cardinality`).
    #[serde(rename = "low-cardinality")]
    LowCardinality,
}

/// Which signals `ignored_patterns` drops (`routes.ignore_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreMode {
    /// Drop metrics and traces (default).
    #[default]
    All,
    /// Drop traces only.
    Traces,
    /// Drop metrics only.
    Metrics,
}

/// `routes` section.
///
/// Beyla applies the `heuristic` decorator even without a `routes` section; so does beyla-rs
/// (the defaults below apply whether or not the section is written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    /// Route patterns, e.g. `/user/{id}` or `/user/:id/basket/*`; the first match names the
    /// route. A comma-separated string is also accepted. Default: empty.
    #[serde(deserialize_with = "de_list")]
    pub patterns: Vec<RoutePattern>,
    /// Paths to drop (same syntax as `patterns`), per `ignore_mode`. Default: empty.
    #[serde(deserialize_with = "de_list")]
    pub ignored_patterns: Vec<RoutePattern>,
    /// Which signals `ignored_patterns` drops: `all`, `traces` or `metrics`. Default `all`.
    pub ignore_mode: IgnoreMode,
    /// What to do with unmatched paths: `unset`, `path`, `wildcard`, `heuristic` or
    /// `low-cardinality`. Default `heuristic`. Env (beyla-rs extension; Beyla reads routes from
    /// YAML only): `BEYLA_ROUTES_UNMATCHED`.
    pub unmatched: Unmatched,
    /// Character that replaces ID-like segments in `heuristic` mode. Default `*`.
    pub wildcard_char: char,
    /// Cap on distinct values per path segment before it becomes `wildcard_char`
    /// (`low-cardinality` mode; also used by beyla-rs in `heuristic` mode as a safety net).
    /// Default 10.
    pub max_path_segment_cardinality: u32,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            patterns: Vec::new(),
            ignored_patterns: Vec::new(),
            ignore_mode: IgnoreMode::All,
            unmatched: Unmatched::Heuristic,
            wildcard_char: '*',
            max_path_segment_cardinality: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_validate() {
        for ok in ["/", "/user/{id}", "/user/:id/basket/{product}", "/user/*", "/v1/**", "/basic/:rnd"] {
            assert!(RoutePattern::new(ok).is_ok(), "{ok}");
        }
        for bad in ["user", "/user/{id", "/user/{}", "/a/x*", "/a/:", "/a/{b}{c}"] {
            assert!(RoutePattern::new(bad).is_err(), "{bad}");
        }
    }
}
