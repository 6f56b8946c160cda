//! Value types shared by the configuration sections: durations, port sets, glob and regex
//! patterns, and the small enums of the top level.
//!
//! Every type here serialises back to the text a user would write (`"5s"`, `"80,8000-8999"`,
//! `"*nginx*"`), so a [`Config`](super::Config) round-trips through YAML and figment.

use std::fmt;
use std::str::FromStr;

use globset::{GlobBuilder, GlobMatcher};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------------------------

/// A duration written as Go does: `500ms`, `5s`, `5m`, `1h`, or compound `1m30s`.
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; numbers may have a fraction (`1.5s`).
/// A bare `0` is accepted; other bare numbers are rejected because their unit is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// The zero duration.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The value as a [`std::time::Duration`].
    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// Whether the duration is zero (Beyla uses `0` to mean "disabled" for timeouts).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Parses Go-style duration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let invalid =
            || format!("invalid duration {text:?}: expected a number with a unit, like 500ms, 5s, 5m or 1m30s");
        if s.is_empty() {
            return Err(invalid());
        }
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        let mut rest = s;
        let mut total: f64 = 0.0;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
            if num_len == 0 {
                return Err(invalid());
            }
            let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let nanos_per_unit: f64 = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(invalid()),
            };
            rest = &rest[unit_len..];
            total += number * nanos_per_unit;
        }
        if !total.is_finite() || total > u64::MAX as f64 {
            return Err(invalid());
        }
        Ok(Duration(std::time::Duration::from_nanos(total.round() as u64)))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    /// Compound form that [`Duration::parse`] reads back: `1h2m3s`, `1s500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        let units: [(&str, u128); 6] = [
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        let mut rest = total;
        for (unit, nanos) in units {
            let n = rest / nanos;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * nanos;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 5s, 5m or 1m30s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                if v == 0 {
                    Ok(Duration::ZERO)
                } else {
                    Err(E::custom(format!("invalid duration {v}: a unit is required, like {v}s or {v}ms")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("invalid duration {v}: must not be negative"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// PortSet
// ---------------------------------------------------------------------------------------------

/// One inclusive port range; `start == end` for a single port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

/// A set of ports as Beyla writes it: `80`, `8000-8999`, or `80,443,8000-8999`.
///
/// Accepted from YAML as an integer, a string, or a list of either.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    /// A set holding one port.
    pub fn single(port: u16) -> Self {
        PortSet { ranges: vec![PortRange { start: port, end: port }] }
    }

    /// Parses `80`, `8000-8999` or a comma-separated list of those.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid port set {text:?}: {why}; expected a port (1-65535), a range like 8000-8999, \
                 or a comma-separated list of them"
            )
        };
        let mut ranges = Vec::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(invalid("empty entry"));
            }
            let (a, b) = match entry.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (entry, entry),
            };
            let start = parse_port(a).map_err(|e| invalid(&e))?;
            let end = parse_port(b).map_err(|e| invalid(&e))?;
            if start > end {
                return Err(invalid(&format!("range {start}-{end} is reversed")));
            }
            ranges.push(PortRange { start, end });
        }
        Ok(PortSet { ranges })
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.start <= port && port <= r.end)
    }

    /// The ranges, in the order written.
    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    fn extend(&mut self, other: PortSet) {
        self.ranges.extend(other.ranges);
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("port {s} is out of range")),
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start == r.end {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}-{}", r.start, r.end)?;
            }
        }
        Ok(())
    }
}

impl FromStr for PortSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PortSet::parse(s)
    }
}

impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port, a port range like 8000-8999, or a comma-separated list of them")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSet, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(PortSet::single(p)),
                    _ => Err(E::custom(format!("invalid port {v}: must be between 1 and 65535"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSet, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("invalid port {v}: must be between 1 and 65535"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSet, E> {
                PortSet::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortSet, A::Error> {
                let mut set: Option<PortSet> = None;
                while let Some(part) = seq.next_element::<PortSet>()? {
                    match set.as_mut() {
                        Some(s) => s.extend(part),
                        None => set = Some(part),
                    }
                }
                set.ok_or_else(|| de::Error::custom("empty port list"))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

/// A glob pattern, compiled the way Beyla compiles its globs (`gobwas/glob` without
/// separators): `*` and `?` also match `/`, `{a,b}` alternates, `[!x]` negates a class.
#[derive(Clone)]
pub struct GlobPattern {
    source: String,
    matcher: GlobMatcher,
}

impl GlobPattern {
    /// Compiles `pattern`; an empty pattern is an error.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("invalid glob \"\": the pattern is empty".to_string());
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))?;
        Ok(GlobPattern { source: pattern.to_string(), matcher: glob.compile_matcher() })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern.
    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }

    /// The compiled matcher.
    pub fn matcher(&self) -> &GlobMatcher {
        &self.matcher
    }
}

/// A regular expression (Rust `regex` syntax, close to Go's RE2); matches anywhere in the
/// text unless anchored, as Beyla's `executable_name` and `services[].exe_path` do.
#[derive(Clone)]
pub struct RegexPattern {
    regex: regex::Regex,
}

impl RegexPattern {
    /// Compiles `pattern`; an empty pattern is an error.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("invalid regex \"\": the pattern is empty".to_string());
        }
        let regex = regex::Regex::new(pattern).map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            format!("invalid regex {pattern:?}: {}", last.trim_start_matches("error: "))
        })?;
        Ok(RegexPattern { regex })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the regex matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The compiled regex.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

/// A selector pattern: a glob (`discovery.instrument`, `auto_target_exe`) or a regex
/// (`discovery.services`, `executable_name`). Deserialises as a glob.
#[derive(Clone)]
pub enum Matcher {
    /// Glob, matched against the whole text.
    Glob(GlobPattern),
    /// Regex, matched anywhere in the text.
    Regex(RegexPattern),
}

impl Matcher {
    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(text),
            Matcher::Regex(r) => r.is_match(text),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            Matcher::Glob(g) => g.as_str(),
            Matcher::Regex(r) => r.as_str(),
        }
    }

    /// Whether this is a regex (deprecated selector syntax).
    pub fn is_regex(&self) -> bool {
        matches!(self, Matcher::Regex(_))
    }
}

impl From<GlobPattern> for Matcher {
    fn from(g: GlobPattern) -> Self {
        Matcher::Glob(g)
    }
}

impl From<RegexPattern> for Matcher {
    fn from(r: RegexPattern) -> Self {
        Matcher::Regex(r)
    }
}

macro_rules! pattern_impls {
    ($ty:ty, $kind:literal, $new:path) => {
        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", $kind, self.as_str())
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $new(s)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $new(&text).map_err(de::Error::custom)
            }
        }
    };
}

pattern_impls!(GlobPattern, "Glob", GlobPattern::new);
pattern_impls!(RegexPattern, "Regex", RegexPattern::new);
pattern_impls!(Matcher, "Matcher", matcher_from_glob);

fn matcher_from_glob(s: &str) -> Result<Matcher, String> {
    GlobPattern::new(s).map(Matcher::Glob)
}

// ---------------------------------------------------------------------------------------------
// Top-level enums
// ---------------------------------------------------------------------------------------------

/// `log_level`: `DEBUG`, `INFO`, `WARN` or `ERROR`, case-insensitive (`WARNING` also accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Verbose diagnostics.
    Debug,
    /// Normal operation (default).
    #[default]
    Info,
    /// Problems that do not stop the agent.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// Upper-case name as Beyla writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }

    /// The matching `tracing` level.
    pub fn to_tracing(&self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warn),
            "ERROR" => Ok(LogLevel::Error),
            _ => Err(format!(
                "unknown variant `{s}`, expected one of `DEBUG`, `INFO`, `WARN`, `ERROR` (case-insensitive)"
            )),
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// `trace_printer`: print every span to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TracePrinter {
    /// Print nothing (default).
    #[default]
    Disabled,
    /// One concise line of text per span.
    Text,
    /// One compact JSON object per span.
    Json,
    /// One indented JSON object per span.
    JsonIndent,
}

impl TracePrinter {
    /// Whether spans are printed.
    pub fn is_enabled(&self) -> bool {
        *self != TracePrinter::Disabled
    }
}

/// `log_format`: how the agent writes its own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

// ---------------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------------

/// Deserialises a list from a YAML sequence, from a comma-separated string (as environment
/// variables write lists), from a single scalar, or from null (empty list).
pub(crate) fn de_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: DeserializeOwned> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or a comma-separated string")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<T>()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|part| T::deserialize(part.into_deserializer()))
                .collect()
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
            Ok(vec![T::deserialize(v.into_deserializer())?])
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
            Ok(vec![T::deserialize(v.into_deserializer())?])
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<T>, E> {
            Ok(vec![T::deserialize(v.into_deserializer())?])
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<T>, E> {
            Ok(vec![T::deserialize(v.into_deserializer())?])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// Deserialises PIDs from a list, a single number, or a comma-separated string (`1234,5678`).
pub(crate) fn de_pids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    struct Pid(u32);
    impl<'de> Deserialize<'de> for Pid {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Pid;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a process id")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pid, E> {
                    u32::try_from(v).map(Pid).map_err(|_| E::custom(format!("invalid pid {v}: out of range")))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pid, E> {
                    u32::try_from(v).map(Pid).map_err(|_| E::custom(format!("invalid pid {v}: out of range")))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Pid, E> {
                    v.trim().parse().map(Pid).map_err(|_| E::custom(format!("invalid pid {v:?}: expected a number")))
                }
            }
            d.deserialize_any(V)
        }
    }
    let pids: Vec<Pid> = de_list(d)?;
    Ok(pids.into_iter().map(|p| p.0).collect())
}

/// Deserialises `T` treating an explicit YAML null as `T::default()` (Beyla's yaml.v3 leaves
/// the zero value for `key:` with no value).
pub(crate) fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let cases = [
            ("500ms", 500_000_000u128, "500ms"),
            ("5s", 5_000_000_000, "5s"),
            ("5m", 300_000_000_000, "5m"),
            ("1m30s", 90_000_000_000, "1m30s"),
            ("1.5s", 1_500_000_000, "1s500ms"),
            ("2h", 7_200_000_000_000, "2h"),
            ("10us", 10_000, "10us"),
            ("0", 0, "0s"),
        ];
        for (text, nanos, printed) in cases {
            let d = Duration::parse(text).expect(text);
            assert_eq!(d.as_std().as_nanos(), nanos, "{text}");
            assert_eq!(d.to_string(), printed, "{text}");
            assert_eq!(Duration::parse(printed), Ok(d));
        }
        for bad in ["", "5", "s", "5x", "1m30", "-1s", "5 s"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn port_sets_parse() {
        let p = PortSet::parse("80, 443,8000-8999").expect("parse");
        assert!(p.contains(80) && p.contains(443) && p.contains(8500) && !p.contains(81));
        assert_eq!(p.to_string(), "80,443,8000-8999");
        for bad in ["", "abc", "0", "70000", "90-80", "80,", "-5", "1-2-3"] {
            assert!(PortSet::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn globs_match_like_beyla() {
        let g = GlobPattern::new("{*beyla,*otelcol-contrib[!/]*}").expect("glob");
        assert!(g.is_match("/usr/bin/beyla"));
        assert!(g.is_match("/opt/otelcol-contrib-1.2"));
        assert!(!g.is_match("/opt/otelcol-contrib/x"));
        assert!(GlobPattern::new("*http*").expect("glob").is_match("/srv/my/http/server"));
        assert!(GlobPattern::new("[").is_err());
        assert!(RegexPattern::new("(").is_err());
    }

    #[test]
    fn log_levels_are_case_insensitive() {
        assert_eq!("debug".parse::<LogLevel>(), Ok(LogLevel::Debug));
        assert_eq!("Warning".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert!("verbose".parse::<LogLevel>().is_err());
    }
}
