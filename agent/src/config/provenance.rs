//! Provenance: which layer (file, environment, `--set`) set which key, so that an error
//! about a merged value names where it was written.

use std::path::PathBuf;

use super::error::Origin;
use super::locate::locate;

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
