//! `http.route` from URL paths (the `routes` config section), following Beyla.
//!
//! Patterns (Beyla `pkg/internal/transform/route/matcher.go`):
//! - a segment `{name}` or `:name` (word characters only) matches any one path segment;
//! - a segment `*` matches the rest of the path, including nothing: `/ski/*` matches `/ski`,
//!   `/ski/doo` and `/ski/doo/new/`; segments after a `*` are ignored;
//! - a literal segment wins over a placeholder at the same position, with no backtracking;
//! - leading and trailing `/` are ignored; the query string and fragment are stripped;
//! - a match returns the pattern **as written** (`/foo/:id`, `/foo/{id}`), not normalized.
//!
//! `ignored_patterns` use the same syntax. When no pattern matches, `unmatched` decides
//! (Beyla `pkg/transform/routes.go`): `unset` gives no route, `path` the path itself,
//! `wildcard` the constant `/**`, and `heuristic` (Beyla's default) replaces id-like
//! segments by `wildcard_char` ([`cluster_path`]).
//!
//! Cardinality: routes produced by `path` and `heuristic` are unbounded, so at most
//! `max_routes` distinct ones are kept; later unseen ones become [`OVERFLOW_ROUTE`] (`/**`,
//! the route Beyla already uses for "unknown"; `/*` is a legitimate heuristic route for
//! `/123`, so it would be ambiguous). Pattern routes and `/**` are bounded by configuration
//! and never counted. [`RouteMatcher::route`] takes `&self` and is thread-safe (an internal
//! mutex around a hash set, O(1) per call).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Route given to unmatched paths in `wildcard` mode, and to overflowed routes.
pub const WILDCARD_ROUTE: &str = "/**";
/// Route given once `max_routes` distinct generated routes have been seen.
pub const OVERFLOW_ROUTE: &str = WILDCARD_ROUTE;
/// Default cap on distinct generated routes.
pub const DEFAULT_MAX_ROUTES: usize = 1000;
/// Beyla's heuristic keeps at most this many `/`-separated pieces.
const MAX_SEGMENTS: usize = 10;

/// `routes.unmatched`: the configuration's own type (parsing and errors live there).
pub use crate::config::Unmatched;

#[derive(Debug, Default)]
struct Node {
    /// Pattern matched when the path ends here (or, with `rest`, continues anywhere).
    route: Option<String>,
    children: HashMap<String, Node>,
    /// `{x}` / `:x` child.
    placeholder: Option<Box<Node>>,
    /// A `*` segment ends the pattern here.
    rest: bool,
}

fn is_placeholder(seg: &str) -> bool {
    let word = |s: &str| s.chars().all(|c| c.is_alphanumeric() || c == '_');
    match seg.strip_prefix(':') {
        Some(name) => word(name),
        None => seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')).is_some_and(word),
    }
}

fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Path segments without the leading and trailing empty ones.
fn tokens(path: &str) -> Vec<&str> {
    let path = strip_query(path);
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

/// Pattern tree, one level per path segment.
#[derive(Debug, Default)]
struct Patterns {
    root: Node,
    empty: bool,
}

impl Patterns {
    fn new(patterns: &[String]) -> Self {
        let mut root = Node::default();
        for pattern in patterns {
            let mut node = &mut root;
            for seg in tokens(pattern) {
                if seg == "*" {
                    node.rest = true;
                    break;
                }
                node = if is_placeholder(seg) {
                    node.placeholder.get_or_insert_with(Box::default)
                } else {
                    node.children.entry(seg.to_string()).or_default()
                };
            }
            node.route = Some(pattern.clone());
        }
        Patterns { root, empty: patterns.is_empty() }
    }

    fn find(&self, path: &str) -> Option<&str> {
        if self.empty {
            return None;
        }
        let mut node = &self.root;
        for seg in tokens(path) {
            node = if let Some(child) = node.children.get(seg) {
                child
            } else if node.rest {
                return node.route.as_deref();
            } else if let Some(p) = &node.placeholder {
                p
            } else {
                return None;
            };
        }
        node.route.as_deref()
    }
}

/// Assigns `http.route` to URL paths.
#[derive(Debug)]
pub struct RouteMatcher {
    patterns: Patterns,
    ignored: Patterns,
    unmatched: Unmatched,
    wildcard_char: char,
    max_routes: usize,
    seen: Mutex<HashSet<String>>,
}

impl RouteMatcher {
    /// `routes.patterns`, `ignored_patterns`, `unmatched` and `wildcard_char`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let r = &cfg.routes;
        let strings = |v: &[crate::config::RoutePattern]| v.iter().map(|p| p.as_str().to_string()).collect::<Vec<_>>();
        RouteMatcher::new(
            &strings(&r.patterns),
            &strings(&r.ignored_patterns),
            r.unmatched,
            r.wildcard_char,
            DEFAULT_MAX_ROUTES,
        )
    }

    pub fn new(
        patterns: &[String],
        ignored_patterns: &[String],
        unmatched: Unmatched,
        wildcard_char: char,
        max_routes: usize,
    ) -> Self {
        RouteMatcher {
            patterns: Patterns::new(patterns),
            ignored: Patterns::new(ignored_patterns),
            unmatched,
            wildcard_char,
            max_routes,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The route of `path`; `None` means no `http.route` (`unset` and no pattern matched).
    pub fn route(&self, path: &str) -> Option<String> {
        if let Some(r) = self.patterns.find(path) {
            return Some(r.to_string());
        }
        match self.unmatched {
            Unmatched::Unset => None,
            Unmatched::Wildcard => Some(WILDCARD_ROUTE.to_string()),
            Unmatched::Path => Some(self.capped(strip_query(path).to_string())),
            // low-cardinality is the heuristic bounded further; the route cap bounds it here.
            Unmatched::Heuristic | Unmatched::LowCardinality => {
                Some(self.capped(cluster_path(path, self.wildcard_char)))
            }
        }
    }

    /// True if `path` matches one of the `ignored_patterns`.
    pub fn ignored(&self, path: &str) -> bool {
        self.ignored.find(path).is_some()
    }

    fn capped(&self, route: String) -> String {
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.contains(&route) {
            route
        } else if seen.len() < self.max_routes {
            seen.insert(route.clone());
            route
        } else {
            OVERFLOW_ROUTE.to_string()
        }
    }
}

impl Default for RouteMatcher {
    /// No patterns, `heuristic`, `*`, [`DEFAULT_MAX_ROUTES`]: Beyla's defaults.
    fn default() -> Self {
        RouteMatcher::new(&[], &[], Unmatched::default(), '*', DEFAULT_MAX_ROUTES)
    }
}

/// Beyla's heuristic: keeps the first [`MAX_SEGMENTS`] `/`-pieces of the path (query
/// stripped) and replaces each non-empty piece that does not look like a word by
/// `wildcard`: `/users/42/orders/ab12cd34ef` -> `/users/*/orders/*`.
pub fn cluster_path(path: &str, wildcard: char) -> String {
    let path = strip_query(path);
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').take(MAX_SEGMENTS).enumerate() {
        if i > 0 {
            out.push('/');
        }
        if seg.is_empty() {
            continue;
        }
        if is_word_segment(seg) {
            out.push_str(seg);
        } else {
            out.push(wildcard);
        }
    }
    out
}

/// A segment is kept when it is made of ASCII letters, `-`, `_` and `.`, except that its
/// second character may be anything (`v1`, `k8s`, `j4elk`, as in Beyla), and each of its
/// `-_.`-separated parts passes [`looks_like_word`].
fn is_word_segment(seg: &str) -> bool {
    let valid = |b: u8| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_' | b'.');
    if !seg.bytes().enumerate().all(|(i, b)| valid(b) || i == 1) {
        return false;
    }
    seg.split(['-', '_', '.']).all(looks_like_word)
}

/// Letter pairs that (almost) never occur in words of the languages URLs are written in.
const RARE_BIGRAMS: &[&str] = &[
    "bq", "bx", "cj", "cx", "dq", "dx", "fq", "fx", "fz", "gq", "gx", "hx", "jb", "jc", "jd", "jf", "jg", "jh", "jl",
    "jm", "jp", "jq", "jr", "jt", "jv", "jw", "jx", "jz", "kq", "kx", "kz", "lx", "mq", "mx", "pq", "px", "qb", "qc",
    "qd", "qf", "qg", "qh", "qj", "qk", "qm", "qn", "qp", "qt", "qv", "qw", "qx", "qy", "qz", "sx", "tq", "tx", "vb",
    "vf", "vh", "vj", "vk", "vm", "vp", "vq", "vw", "vx", "wq", "wx", "wz", "xd", "xj", "xk", "xq", "xr", "xz", "zb",
    "zc", "zd", "zf", "zg", "zj", "zk", "zn", "zp", "zq", "zr", "zs", "zt", "zx",
];

/// Cheap stand-in for Beyla's Markov-chain gibberish classifier (`go-gibberish`), looking at
/// the letters only: short parts always pass; gibberish has no vowels (5+ letters), a run of
/// 5+ consonants, under 1/8 vowels (8+ letters), a rare letter pair, or only hex letters (8+).
fn looks_like_word(part: &str) -> bool {
    // One pass, no allocation: this runs for every segment of every request's path.
    let vowel = |b: u8| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y');
    let (mut n, mut vowels, mut run, mut long_run, mut rare, mut all_hex) = (0, 0, 0, false, false, true);
    let mut prev: Option<u8> = None;
    for b in part.bytes().filter(u8::is_ascii_alphabetic).map(|b| b.to_ascii_lowercase()) {
        n += 1;
        if vowel(b) {
            vowels += 1;
            run = 0;
        } else {
            run += 1;
            long_run |= run >= 5;
        }
        rare |= prev.is_some_and(|p| RARE[usize::from(p - b'a')][usize::from(b - b'a')]);
        prev = Some(b);
        all_hex &= (b'a'..=b'f').contains(&b);
    }
    if n <= 3 {
        return true;
    }
    if (vowels == 0 && n >= 5) || (n >= 8 && vowels * 8 < n) || long_run || rare {
        return false;
    }
    !(n >= 8 && all_hex)
}

/// [`RARE_BIGRAMS`] as a table indexed by the two letters.
static RARE: [[bool; 26]; 26] = {
    let mut t = [[false; 26]; 26];
    let mut i = 0;
    while i < RARE_BIGRAMS.len() {
        let b = RARE_BIGRAMS[i].as_bytes();
        t[(b[0] - b'a') as usize][(b[1] - b'a') as usize] = true;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn matcher(patterns: &[&str], unmatched: Unmatched) -> RouteMatcher {
        RouteMatcher::new(&strings(patterns), &[], unmatched, '*', DEFAULT_MAX_ROUTES)
    }

    #[test]
    fn beyla_matcher_cases() {
        // Mirrors Beyla's route matcher test table.
        let m = matcher(
            &["/foo/bar/bae/", "/foo/:id", "/foo/{id}/push", "/ski/*", "/snow/mobile/*", "/"],
            Unmatched::Unset,
        );
        let r = |p: &str| m.route(p);
        assert_eq!(r("/").as_deref(), Some("/"));
        assert_eq!(r("/foo/bar/bae").as_deref(), Some("/foo/bar/bae/"));
        assert_eq!(r("/foo/1234").as_deref(), Some("/foo/:id"));
        assert_eq!(r("/foo/someId").as_deref(), Some("/foo/:id"));
        assert_eq!(r("/foo/5678/push").as_deref(), Some("/foo/{id}/push"));
        for none in
            ["/foo", "/foo/bar", "/foo/bar/bae/baz", "/traca", "/foo/1234/down", "/foo/5678/push/up", "/snow/man"]
        {
            assert_eq!(r(none), None, "{none}");
        }
        assert_eq!(r("/ski").as_deref(), Some("/ski/*"));
        assert_eq!(r("/ski/doo").as_deref(), Some("/ski/*"));
        assert_eq!(r("/ski/doo/new/").as_deref(), Some("/ski/*"));
        assert_eq!(r("/snow/mobile").as_deref(), Some("/snow/mobile/*"));
        assert_eq!(r("/snow/mobile/long").as_deref(), Some("/snow/mobile/*"));
    }

    #[test]
    fn query_is_stripped_and_pattern_returned_as_written() {
        let m = matcher(&["/factorial/{n}", "/user/:id/basket/{product}"], Unmatched::Unset);
        assert_eq!(m.route("/factorial/12?x=1#f").as_deref(), Some("/factorial/{n}"));
        assert_eq!(m.route("/user/7/basket/3").as_deref(), Some("/user/:id/basket/{product}"));
        assert_eq!(m.route("/factorial?n=3"), None);
    }

    #[test]
    fn literal_beats_placeholder_without_backtracking() {
        let m = matcher(&["/api/users/me", "/api/users/{id}/orders"], Unmatched::Unset);
        assert_eq!(m.route("/api/users/me").as_deref(), Some("/api/users/me"));
        assert_eq!(m.route("/api/users/42/orders").as_deref(), Some("/api/users/{id}/orders"));
        // Like Beyla: once "me" is taken literally, the placeholder branch is not tried.
        assert_eq!(m.route("/api/users/me/orders"), None);
        // Not placeholders: literal segments.
        let m = matcher(&["/a/{x-y}", "/b/:"], Unmatched::Unset);
        assert_eq!(m.route("/a/{x-y}").as_deref(), Some("/a/{x-y}"));
        assert_eq!(m.route("/a/1"), None);
        assert_eq!(m.route("/b/anything").as_deref(), Some("/b/:"));
    }

    #[test]
    fn unmatched_modes() {
        let pats = ["/known/{id}"];
        assert_eq!(matcher(&pats, Unmatched::Unset).route("/x/1"), None);
        assert_eq!(matcher(&pats, Unmatched::Path).route("/x/1?q").as_deref(), Some("/x/1"));
        assert_eq!(matcher(&pats, Unmatched::Wildcard).route("/x/1").as_deref(), Some("/**"));
        assert_eq!(matcher(&pats, Unmatched::Heuristic).route("/x/1").as_deref(), Some("/x/*"));
        assert_eq!(matcher(&pats, Unmatched::Heuristic).route("/known/1").as_deref(), Some("/known/{id}"));
        assert_eq!(matcher(&[], Unmatched::Wildcard).route("/").as_deref(), Some("/**"));
        let m = RouteMatcher::new(&[], &[], Unmatched::Heuristic, '_', 10);
        assert_eq!(m.route("/factorial/123").as_deref(), Some("/factorial/_"));
        assert_eq!(Unmatched::default(), Unmatched::Heuristic);
    }

    #[test]
    fn ignored_patterns() {
        let m = RouteMatcher::new(
            &[],
            &strings(&["/metrics", "/health*", "/static/*", "/debug/:x"]),
            Unmatched::Unset,
            '*',
            10,
        );
        assert!(m.ignored("/metrics"));
        assert!(m.ignored("/metrics/"));
        assert!(m.ignored("/metrics?format=text"));
        assert!(m.ignored("/static/css/app.css"));
        assert!(m.ignored("/debug/pprof"));
        assert!(!m.ignored("/debug/pprof/heap"));
        // `*` is only special as a whole segment.
        assert!(!m.ignored("/healthz"));
        assert!(!m.ignored("/api"));
        assert!(!RouteMatcher::default().ignored("/metrics"));
    }

    #[test]
    fn heuristic_examples() {
        let c = |p: &str| cluster_path(p, '*');
        assert_eq!(c("/factorial/123"), "/factorial/*");
        assert_eq!(c("/users/42/orders/ab12cd34ef"), "/users/*/orders/*");
        assert_eq!(c("/health"), "/health");
        assert_eq!(c("/api/v1/items"), "/api/v1/items");
        assert_eq!(c("/api/v2/k8s/clusters"), "/api/v2/k8s/clusters");
        assert_eq!(c("/items/550e8400-e29b-41d4-a716-446655440000"), "/items/*");
        assert_eq!(c("/blobs/deadbeefcafebabe"), "/blobs/*");
        assert_eq!(c("/tokens/xKqZpLwNmVbT"), "/tokens/*");
        assert_eq!(c("/search?q=42"), "/search");
        assert_eq!(c("/static/index.html"), "/static/index.html");
        assert_eq!(c("/.well-known/openid-configuration"), "/.well-known/openid-configuration");
        assert_eq!(c("/a/b/c/d/e/f/g/h/i/j/k/l"), "/a/b/c/d/e/f/g/h/i");
    }

    #[test]
    fn heuristic_matches_beyla_test_table() {
        let c = |p: &str| cluster_path(p, '*');
        assert_eq!(c(""), "");
        assert_eq!(c("/users/fdklsd/j4elk/23993/job/2"), "/users/*/j4elk/*/job/*");
        assert_eq!(c("123"), "*");
        assert_eq!(c("/123"), "/*");
        assert_eq!(c("123/"), "*/");
        assert_eq!(c("123/ljgdflgjf"), "*/*");
        assert_eq!(c("/**"), "/*");
        assert_eq!(c("/u/2"), "/u/*");
        assert_eq!(c("/v1/products/2"), "/v1/products/*");
        assert_eq!(c("/v1/products/22"), "/v1/products/*");
        assert_eq!(c("/v1/products/22j"), "/v1/products/*");
        assert_eq!(c("/products/1/org/3"), "/products/*/org/*");
        assert_eq!(c("/products//org/3"), "/products//org/*");
        assert_eq!(c("/v1/k6-test-runs/1"), "/v1/k6-test-runs/*");
        assert_eq!(c("/attach"), "/attach");
        assert_eq!(c("/usuarios/fdklsd/j4elk/23993/trabajo/2"), "/usuarios/*/j4elk/*/trabajo/*");
        assert_eq!(c("/Benutzer/fdklsd/j4elk/23993/Arbeit/2"), "/Benutzer/*/j4elk/*/Arbeit/*");
        assert_eq!(c("/utilisateurs/fdklsd/j4elk/23993/tache/2"), "/utilisateurs/*/j4elk/*/tache/*");
        assert_eq!(c("/products/"), "/products/");
        assert_eq!(c("/user-space/"), "/user-space/");
        assert_eq!(c("/user_space/"), "/user_space/");
    }

    #[test]
    fn common_words_survive() {
        for w in [
            "accounts",
            "checkout",
            "strength",
            "rhythm",
            "graphql",
            "metrics",
            "healthz",
            "login",
            "oauth",
            "callback",
            "webhooks",
            "subscriptions",
            "internationalization",
            "json",
            "xml",
            "html",
            "queue",
            "extract",
            "frequency",
            "schedule",
            "javascript",
            "quickstart",
        ] {
            assert!(looks_like_word(w), "{w}");
        }
        for g in ["fdklsd", "ljgdflgjf", "qzxvbnm", "deadbeef", "zzkqtrwp", "bcdfghjk"] {
            assert!(!looks_like_word(g), "{g}");
        }
    }

    #[test]
    fn cardinality_cap() {
        let m = RouteMatcher::new(&strings(&["/fixed/{id}"]), &[], Unmatched::Path, '*', 2);
        assert_eq!(m.route("/a").as_deref(), Some("/a"));
        assert_eq!(m.route("/b").as_deref(), Some("/b"));
        assert_eq!(m.route("/c").as_deref(), Some(OVERFLOW_ROUTE));
        // Already seen routes and pattern routes still pass.
        assert_eq!(m.route("/a?x").as_deref(), Some("/a"));
        assert_eq!(m.route("/fixed/9").as_deref(), Some("/fixed/{id}"));
        let zero = RouteMatcher::new(&[], &[], Unmatched::Heuristic, '*', 0);
        assert_eq!(zero.route("/health").as_deref(), Some(OVERFLOW_ROUTE));
    }

    #[test]
    fn shared_across_threads() {
        let m = std::sync::Arc::new(RouteMatcher::new(&[], &[], Unmatched::Path, '*', 50));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|i| m.route(&format!("/t{t}/{i}")).as_deref() != Some(OVERFLOW_ROUTE)).count()
                })
            })
            .collect();
        let kept: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(kept, 50);
    }
}
