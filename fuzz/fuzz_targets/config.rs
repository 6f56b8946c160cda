//! The configuration loader on hostile input: YAML files (an even first byte) or `BEYLA_*` and
//! `OTEL_*` variables (`NAME=value` lines, an odd first byte) go through every layer's checks
//! and the validation. Any outcome but a panic is fine; an error must say something.
use std::path::Path;

use beyla::config::{load_str, Sources};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else { return };
        let text = String::from_utf8_lossy(rest);
        let result = if mode % 2 == 0 {
            load_str(&Sources::default(), Path::new("fuzz.yml"), &text)
        } else {
            let env: Vec<(String, String)> =
                text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            load_str(&Sources { env: &env, ..Sources::default() }, Path::new("fuzz.yml"), "")
        };
        if let Err(e) = result {
            assert!(!e.to_string().is_empty());
        }
    });
}
