//! Go executables: recognise them and find what the Go uprobes need.
//!
//! [`inspect`] reads an executable once and returns a [`GoBinary`]:
//! - the Go release and module paths from `.go.buildinfo` ([`buildinfo`]);
//! - the address, size and file offset of each function in [`PROBED_FUNCTIONS`], from
//!   `.symtab`, or from the `.gopclntab` function table when the binary is stripped
//!   ([`symbols`], [`pclntab`]), plus the file offsets of its `RET` instructions ([`ret`]):
//!   returns are probed there, never with uretprobes (Go moves goroutine stacks);
//! - the struct member offsets the probes read ([`offsets::Offsets`]), from DWARF
//!   ([`dwarf`]) or else from the measured per-version table ([`offsets::FALLBACK`]).
//!
//! [`GoBinary::support`] then says whether the Go probes can run ([`GoSupport`]); when they
//! cannot, [`GoSupport::log`] says why in one line and the caller uses the generic probes.

pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod offsets;
pub mod pclntab;
pub mod ret;
pub mod symbols;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

pub use buildinfo::BuildInfo;
pub use elf::{Arch, LoadSegment};
pub use offsets::{OffsetSource, Offsets};
pub use symbols::SymbolSource;

/// The functions the Go probes attach to, or whose call sites they attach to (exact Go symbol
/// names).
pub const PROBED_FUNCTIONS: &[&str] = &[
    "net/http.serverHandler.ServeHTTP",
    "net/http.(*conn).readRequest",
    "net/http.(*response).WriteHeader",
    "net/http.(*Transport).roundTrip",
    "net/http.(*persistConn).roundTrip",
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus",
    "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders",
    "google.golang.org/grpc.(*ClientConn).Invoke",
    "google.golang.org/grpc.(*ClientConn).NewStream",
    "google.golang.org/grpc/internal/transport.(*http2Client).Write",
    "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields",
    "google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader",
    "golang.org/x/net/http2.(*Framer).WriteHeaders",
    "net/http.(*http2Framer).WriteHeaders",
    "net/http.(*http2ClientConn).writeHeaders",
    "crypto/tls.(*Conn).Read",
    "crypto/tls.(*Conn).Write",
    "net/http.(*http2serverConn).runHandler",
    "golang.org/x/net/http2.(*serverConn).runHandler",
    "net/http.(*http2serverConn).processHeaders",
    "golang.org/x/net/http2.(*serverConn).processHeaders",
    "net/http.(*Request).write",
    "net/http.Header.writeSubset",
    "runtime.newproc1",
    "runtime.casgstatus",
    "runtime.goexit1",
];

/// Calls probed at the call instruction, (caller, callee): the callee's arguments are in
/// registers there, and only this caller's calls fire. `Request.write` writes a client
/// request's head; its call of `Header.writeSubset` comes after the request line, `Host` and
/// `User-Agent`, where an outgoing `traceparent` is added.
pub const PROBED_CALLS: &[(&str, &str)] = &[("net/http.(*Request).write", "net/http.Header.writeSubset")];

/// Functions whose presence makes a binary worth instrumenting (the runtime ones alone are not).
const TRAFFIC_PREFIXES: &[&str] = &["net/http.", "google.golang.org/grpc", "golang.org/x/net/http2.", "crypto/tls."];

/// Errors of [`inspect`].
#[derive(Debug, thiserror::Error)]
pub enum GoInspectError {
    #[error("{} is not a Go executable", path.display())]
    NotGo { path: PathBuf },
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed Go executable {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}

impl GoInspectError {
    /// The file is readable but not a Go executable (the ordinary case for most processes).
    pub fn is_not_go(&self) -> bool {
        matches!(self, GoInspectError::NotGo { .. })
    }
}

/// A Go release, e.g. `go1.19.8` = 1.19.8 (`go1.21rc2` = 1.21.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// Parses `go1.N[.P]` with any suffix (`rc1`, ` X:boringcrypto`); `devel …` is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("go")?;
        let mut nums = rest.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = nums.next()??;
        let minor = nums.next()??;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(GoVersion { major, minor, patch })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A probed function found in the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    /// One of [`PROBED_FUNCTIONS`].
    pub name: &'static str,
    /// Link-time virtual address of the entry.
    pub address: u64,
    /// Size in bytes (from `.symtab`; from the pclntab it runs to the next function).
    pub size: u64,
    /// File offset of the entry.
    pub file_offset: u64,
    /// File offset where entry probes attach: the first instruction past the stack check (the
    /// entry itself runs again when the check sends the goroutine to `morestack`: see
    /// [`ret::x86_64_body_offset`]); the entry for a function without the check, or off x86-64.
    pub probe_offset: u64,
    /// File offsets of every `RET` in the function (x86-64 only; empty elsewhere).
    pub returns: Vec<u64>,
}

/// A call instruction of [`PROBED_CALLS`] found in the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoCallSite {
    pub caller: &'static str,
    pub callee: &'static str,
    /// File offset of the first such `CALL` in the caller (x86-64 only).
    pub file_offset: u64,
}

/// What [`inspect`] learned about a Go executable.
#[derive(Debug, Clone)]
pub struct GoBinary {
    pub path: PathBuf,
    pub build: BuildInfo,
    /// Parsed [`BuildInfo::go_version`]; `None` for development builds.
    pub version: Option<GoVersion>,
    pub arch: Arch,
    /// `ET_DYN`: loaded at a random base (uprobes take file offsets either way).
    pub pie: bool,
    /// `PT_LOAD` segments, to turn virtual addresses into file offsets.
    pub segments: Vec<LoadSegment>,
    pub symbol_source: Option<SymbolSource>,
    /// The [`PROBED_FUNCTIONS`] present in the binary.
    pub functions: Vec<GoFunction>,
    /// The [`PROBED_CALLS`] found in the binary.
    pub calls: Vec<GoCallSite>,
    /// The binary carries `.debug_info`.
    pub has_dwarf: bool,
    pub offsets: Offsets,
    /// Where each known offset came from.
    pub offset_sources: Vec<(&'static str, OffsetSource)>,
}

/// Whether the Go probes can instrument a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoSupport {
    /// Every probe for the functions present has its addresses and offsets.
    Full,
    /// Some offsets or return sites are unknown: the probes needing them stay off.
    Partial { missing: Vec<String> },
    /// No Go probe can run; the generic probes apply.
    Unsupported(String),
}

impl GoSupport {
    /// Logs the outcome in one line (at `info` unless fully supported).
    pub fn log(&self, path: &Path, version: &str) {
        let exe = path.display();
        match self {
            GoSupport::Full => debug!(exe = %exe, version, "Go binary fully supported."),
            GoSupport::Partial { missing } => info!(
                exe = %exe,
                version,
                missing = %missing.join(","),
                "Go binary partly supported: probes needing the missing offsets are disabled."
            ),
            GoSupport::Unsupported(reason) => info!(
                exe = %exe,
                version,
                reason = %reason,
                "Go binary cannot be instrumented with the Go probes, using the generic probes."
            ),
        }
    }
}

/// Maps `path` and inspects it as a Go executable.
///
/// Mapped rather than read so that only the pages looked at are loaded: reading all of a
/// non-Go interpreter (node is 100 MB) put the agent's peak RSS at 140 MB for a header check.
pub fn inspect(path: &Path) -> Result<GoBinary, GoInspectError> {
    let io = |source| GoInspectError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the file is a running process's executable (`/proc/<pid>/exe`), which the kernel
    // refuses to open for writing (ETXTBSY), so the mapping cannot change or shrink under us.
    let data = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    inspect_bytes(path, &data)
}

/// Whether the executable at `path` is a Go program (it has Go's build info section), from its
/// section headers alone: cheap enough to ask for every instrumented process.
pub fn is_go(path: &Path) -> bool {
    use object::read::elf::{FileHeader, SectionHeader};
    let Ok(file) = std::fs::File::open(path) else { return false };
    // SAFETY: as in `inspect`: a running executable cannot be written to.
    let Ok(data) = (unsafe { memmap2::Mmap::map(&file) }) else { return false };
    let data: &[u8] = &data;
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(data) else { return false };
    let Ok(endian) = header.endian() else { return false };
    let Ok(sections) = header.sections(endian, data) else { return false };
    sections.iter().any(|s| sections.section_name(endian, s) == Ok(&b".go.buildinfo"[..]) && s.sh_size(endian) > 0)
}

/// [`inspect`] on the file's bytes.
pub fn inspect_bytes(path: &Path, data: &[u8]) -> Result<GoBinary, GoInspectError> {
    let not_go = || GoInspectError::NotGo { path: path.to_path_buf() };
    let malformed = |reason: String| GoInspectError::Malformed { path: path.to_path_buf(), reason };
    let image = elf::Image::parse(data).ok_or_else(not_go)?;

    // Build info: the section, else the first writable segment (no section headers).
    let blob = match image.section(".go.buildinfo") {
        Some((_, d)) => d,
        None => {
            let seg = image.segments.iter().find(|s| s.flags & 2 != 0).ok_or_else(not_go)?;
            // Go puts it at the segment's start; its own reader scans the first 64 KiB too.
            std::borrow::Cow::Borrowed(image.read(seg.vaddr, seg.filesz.min(64 << 10)).ok_or_else(not_go)?)
        }
    };
    let build = match buildinfo::parse(&blob, &|a, l| image.read(a, l)) {
        Ok(b) => b,
        Err(buildinfo::BuildInfoError::NoMagic) => return Err(not_go()),
        Err(e) => return Err(malformed(e.to_string())),
    };
    let version = GoVersion::parse(&build.go_version);

    // Functions.
    let symtab = symbols::from_symtab(&image, PROBED_FUNCTIONS);
    let (symbol_source, found) = if !symtab.is_empty() {
        (Some(SymbolSource::Symtab), symtab)
    } else {
        match symbols::from_pclntab(&image) {
            Ok(Some((format, funcs))) => {
                (Some(SymbolSource::Pclntab(format)), symbols::wanted_from_pclntab(&funcs, PROBED_FUNCTIONS))
            }
            Ok(None) => (None, Default::default()),
            Err(e) => {
                warn!(exe = %path.display(), error = %e, "Go function table unreadable.");
                (None, Default::default())
            }
        }
    };
    let arch = image.arch();
    let mut functions = Vec::new();
    for &name in PROBED_FUNCTIONS {
        let Some(&(address, size)) = found.get(name) else { continue };
        // The offsets of its returns and body are below `size` past the entry.
        let Some(file_offset) = elf::file_offset(&image.segments, address).filter(|o| o.checked_add(size).is_some())
        else {
            return Err(malformed(format!("{name} at {address:#x} is not in a loadable segment")));
        };
        let (returns, probe_offset) = match (arch, image.read(address, size)) {
            (Arch::X86_64, Some(code)) => (
                ret::x86_64_ret_offsets(code, address).into_iter().map(|o| file_offset + o).collect(),
                file_offset + ret::x86_64_body_offset(code, address).unwrap_or(0),
            ),
            _ => (Vec::new(), file_offset),
        };
        functions.push(GoFunction { name, address, size, file_offset, probe_offset, returns });
    }
    let mut calls = Vec::new();
    for &(caller, callee) in PROBED_CALLS {
        let (Some(c), Some(t)) =
            (functions.iter().find(|f| f.name == caller), functions.iter().find(|f| f.name == callee))
        else {
            continue;
        };
        if let (Arch::X86_64, Some(code)) = (arch, image.read(c.address, c.size)) {
            if let Some(&o) = ret::x86_64_call_offsets(code, c.address, t.address).first() {
                calls.push(GoCallSite { caller, callee, file_offset: c.file_offset + o });
            }
        }
    }

    // Offsets: DWARF, then the table.
    let has_dwarf = image.section(".debug_info").is_some_and(|(_, d)| !d.is_empty());
    let from_dwarf = match dwarf::read_offsets(&image) {
        Ok(o) => o,
        Err(e) => {
            warn!(exe = %path.display(), error = %e, "Go DWARF unreadable, using the offsets table.");
            None
        }
    };
    let grpc = build
        .dep_version("google.golang.org/grpc")
        .and_then(|v| GoVersion::parse(&format!("go{}", v.trim_start_matches('v'))));
    let (offsets, offset_sources) =
        offsets::resolve(from_dwarf.as_ref(), version.map(|v| (v.major, v.minor)), grpc.map(|v| (v.major, v.minor)));

    Ok(GoBinary {
        path: path.to_path_buf(),
        build,
        version,
        arch,
        pie: image.is_pie(),
        segments: image.segments.clone(),
        symbol_source,
        functions,
        calls,
        has_dwarf,
        offsets,
        offset_sources,
    })
}

impl GoBinary {
    /// The probed function `name`, if present.
    pub fn function(&self, name: &str) -> Option<&GoFunction> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The call site of `callee` in `caller` (one of [`PROBED_CALLS`]), if found.
    pub fn call_site(&self, caller: &str, callee: &str) -> Option<&GoCallSite> {
        self.calls.iter().find(|c| c.caller == caller && c.callee == callee)
    }

    /// Whether the Go probes can instrument this binary, and what is missing.
    pub fn support(&self) -> GoSupport {
        if self.arch != Arch::X86_64 {
            return GoSupport::Unsupported(format!(
                "architecture {:?}: return sites are only found on x86-64",
                self.arch
            ));
        }
        if let Some(v) = self.version {
            if (v.major, v.minor) < (1, 17) {
                return GoSupport::Unsupported(format!(
                    "{v} uses the stack-based calling convention; the Go probes need go1.17 or later"
                ));
            }
        }
        if self.symbol_source.is_none() {
            return GoSupport::Unsupported("no symbol table and no readable .gopclntab".into());
        }
        let traffic = |prefix: &str| self.functions.iter().any(|f| f.name.starts_with(prefix));
        if !TRAFFIC_PREFIXES.iter().any(|p| traffic(p)) {
            return GoSupport::Unsupported("no net/http, grpc, http2 or crypto/tls function to probe".into());
        }
        let mut missing: Vec<String> = offsets::FIELDS
            .iter()
            .filter(|f| f.needed_by.iter().any(|p| traffic(p)) && self.offsets.get(f.name).is_none())
            .map(|f| f.key())
            .collect();
        missing
            .extend(self.functions.iter().filter(|f| f.returns.is_empty()).map(|f| format!("returns of {}", f.name)));
        if missing.is_empty() {
            GoSupport::Full
        } else {
            GoSupport::Partial { missing }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert_eq!(GoVersion::parse("go1.19.8"), Some(GoVersion { major: 1, minor: 19, patch: 8 }));
        assert_eq!(GoVersion::parse("go1.21rc2"), Some(GoVersion { major: 1, minor: 21, patch: 0 }));
        assert_eq!(GoVersion::parse("go1.23.5 X:boringcrypto"), Some(GoVersion { major: 1, minor: 23, patch: 5 }));
        assert_eq!(GoVersion::parse("devel go1.24-abcdef"), None);
        assert!(GoVersion::parse("go1.16.15").unwrap() < GoVersion::parse("go1.17").unwrap());
    }

    #[test]
    fn a_non_elf_file_is_not_go() {
        let e = inspect_bytes(Path::new("x"), b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(e.is_not_go(), "{e}");
    }
}
