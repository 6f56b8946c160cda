//! Function addresses: `.symtab` when present, else the `.gopclntab` function table.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::elf::Image;
use super::pclntab::{self, Format, PclntabError};

/// Where function addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    Symtab,
    Pclntab(Format),
}

/// `(address, size)` of each function named in `wanted` that `.symtab` defines; empty when
/// the binary has no symbol table.
pub fn from_symtab(image: &Image<'_>, wanted: &[&str]) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for sym in image.file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.address() == 0 {
            continue;
        }
        if let Ok(name) = sym.name() {
            if wanted.contains(&name) {
                out.entry(name.to_string()).or_insert((sym.address(), sym.size()));
            }
        }
    }
    out
}

/// `(address, size)` of each function named in `wanted` among the pclntab's `funcs`.
///
/// The pclntab names a Go function's ABI0 wrapper (`runtime.goexit1.abi0` in `.symtab`) like
/// the function itself; the wrapper is a few instructions that call or jump to the real
/// body, so of two entries with one name the larger is the function.
pub fn wanted_from_pclntab(funcs: &[pclntab::Func], wanted: &[&str]) -> HashMap<String, (u64, u64)> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for f in funcs.iter().filter(|f| wanted.contains(&f.name.as_str())) {
        let e = out.entry(f.name.clone()).or_insert((f.entry, f.size));
        if f.size > e.1 {
            *e = (f.entry, f.size);
        }
    }
    out
}

/// Every function of the pclntab: found as the `.gopclntab` (`.data.rel.ro.gopclntab`) section, the `runtime.pclntab`
/// symbol, or by its header at the start of a read-only segment's 32-byte aligned blocks.
pub fn from_pclntab(image: &Image<'_>) -> Result<Option<(Format, Vec<pclntab::Func>)>, PclntabError> {
    let text =
        image.symbol_address("runtime.text").or_else(|| image.file.section_by_name(".text").map(|s| s.address()));
    // PIEs (-buildmode=pie) keep it in a relro section.
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some((_, data)) = image.section(name) {
            return pclntab::functions(&data, text).map(Some);
        }
    }
    if let Some(addr) = image.symbol_address("runtime.pclntab") {
        let end = image.symbol_address("runtime.epclntab").unwrap_or(addr);
        if let Some(data) = image.read(addr, end.saturating_sub(addr)) {
            return pclntab::functions(data, text).map(Some);
        }
    }
    // No section headers: scan the non-executable, non-writable segments.
    for seg in image.segments.iter().filter(|s| s.flags & 3 == 0) {
        let Some(data) = image.read(seg.vaddr, seg.filesz) else { continue };
        for at in (0..data.len()).step_by(32) {
            if pclntab::looks_like_header(&data[at..]) {
                // A chance match decodes to garbage: require the runtime's entry point.
                if let Ok(r) = pclntab::functions(&data[at..], text) {
                    if r.1.iter().any(|f| f.name == "runtime.main") {
                        return Ok(Some(r));
                    }
                }
            }
        }
    }
    Ok(None)
}
