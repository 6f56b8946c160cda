//! The `.go.buildinfo` blob: Go version and module information (Go's `debug/buildinfo`).
//!
//! The blob starts, 16-byte aligned, with a 32-byte header: the magic `\xff Go buildinf:`
//! (14 bytes), the pointer size, and a flags byte (bit 0: big endian; bit 1: strings inline).
//! - Go 1.18+ (flag bit 1): the version and the module info follow the header as
//!   uvarint-length-prefixed strings.
//! - Before 1.18: two pointers at offsets 16 and 16 + ptrsize to Go string headers
//!   (`runtime.buildVersion`, `runtime.modinfo`) that must be read from the program's memory.
//!
//! The module info is framed by two 16-byte sentinels and holds tab-separated lines
//! (`path`, `mod`, `dep`, `=>`, `build`).

/// The buildinfo magic.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_SIZE: usize = 32;
const ALIGN: usize = 16;

/// What the blob says about the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `runtime.Version()`, e.g. `go1.19.8`.
    pub go_version: String,
    /// The main package path (`path` line; `command-line-arguments` for `go build main.go`).
    pub main_path: Option<String>,
    /// The main module path (`mod` line; absent in GOPATH mode).
    pub main_module: Option<String>,
    /// Dependency modules and their versions (`dep` lines, after `=>` replacements).
    pub deps: Vec<(String, String)>,
}

impl BuildInfo {
    /// The version of dependency module `path`, if the binary lists it.
    pub fn dep_version(&self, path: &str) -> Option<&str> {
        self.deps.iter().find(|(p, _)| p == path).map(|(_, v)| v.as_str())
    }
}

/// Why a blob could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    #[error("no Go buildinfo magic")]
    NoMagic,
    #[error("malformed Go buildinfo: {0}")]
    Malformed(&'static str),
}

/// Finds the blob in `data` (the `.go.buildinfo` section, or a whole data segment) and decodes
/// it. `read(addr, len)` reads the program's memory, for the pre-1.18 pointer format.
pub fn parse<'m>(data: &[u8], read: &dyn Fn(u64, u64) -> Option<&'m [u8]>) -> Result<BuildInfo, BuildInfoError> {
    let blob = find(data).ok_or(BuildInfoError::NoMagic)?;
    let ptr_size = blob[14] as usize;
    let flags = blob[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let (v, rest) = uvarint_string(&blob[HEADER_SIZE..]).ok_or(BuildInfoError::Malformed("version string"))?;
        let (m, _) = uvarint_string(rest).ok_or(BuildInfoError::Malformed("module info string"))?;
        (v.to_vec(), m.to_vec())
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err(BuildInfoError::Malformed("pointer size"));
        }
        let big = flags & 1 != 0;
        let ptr = |b: &[u8]| read_uint(b, ptr_size, big);
        let string_at = |addr: u64| -> Option<Vec<u8>> {
            let hdr = read(addr, 2 * ptr_size as u64)?;
            let (data, len) = (ptr(hdr)?, ptr(hdr.get(ptr_size..)?)?);
            if len > 1 << 20 {
                return None;
            }
            Some(if len == 0 { Vec::new() } else { read(data, len)?.to_vec() })
        };
        let vaddr = ptr(&blob[16..]).ok_or(BuildInfoError::Malformed("version pointer"))?;
        let maddr = ptr(&blob[16 + ptr_size..]).ok_or(BuildInfoError::Malformed("module info pointer"))?;
        let v = string_at(vaddr).ok_or(BuildInfoError::Malformed("version string"))?;
        // A missing module info is not an error (binaries built without module support).
        (v, string_at(maddr).unwrap_or_default())
    };
    if version.is_empty() {
        return Err(BuildInfoError::Malformed("empty version"));
    }
    let go_version = String::from_utf8(version).map_err(|_| BuildInfoError::Malformed("version is not UTF-8"))?;
    let mut info = BuildInfo { go_version, ..BuildInfo::default() };
    // Strip the sentinels (cmd/go/internal/modload.infoStart/infoEnd).
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        parse_modinfo(&String::from_utf8_lossy(&modinfo[16..modinfo.len() - 16]), &mut info);
    }
    Ok(info)
}

fn find(mut data: &[u8]) -> Option<&[u8]> {
    loop {
        let i = data.windows(MAGIC.len()).position(|w| w == MAGIC)?;
        if data.len() - i < HEADER_SIZE {
            return None;
        }
        if i % ALIGN == 0 {
            return Some(&data[i..]);
        }
        data = &data[(i + ALIGN - 1) & !(ALIGN - 1)..];
    }
}

fn parse_modinfo(text: &str, info: &mut BuildInfo) {
    for line in text.lines() {
        let mut cols = line.split('\t');
        match (cols.next(), cols.next(), cols.next()) {
            (Some("path"), Some(p), _) => info.main_path = Some(p.to_string()),
            (Some("mod"), Some(p), _) => info.main_module = Some(p.to_string()),
            (Some("dep"), Some(p), v) => info.deps.push((p.to_string(), v.unwrap_or("").to_string())),
            // A replacement applies to the dependency listed just before it.
            (Some("=>"), Some(p), v) => {
                if let Some(last) = info.deps.last_mut() {
                    *last = (last.0.clone(), v.unwrap_or(p).to_string());
                }
            }
            _ => {}
        }
    }
}

fn uvarint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut n: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let rest = &b[i + 1..];
            let len = usize::try_from(n).ok()?;
            return (len <= rest.len()).then(|| rest.split_at(len));
        }
    }
    None
}

fn read_uint(b: &[u8], size: usize, big: bool) -> Option<u64> {
    let b = b.get(..size)?;
    let mut v = 0u64;
    for i in 0..size {
        let byte = if big { b[i] } else { b[size - 1 - i] };
        v = v << 8 | u64::from(byte);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_memory(_: u64, _: u64) -> Option<&'static [u8]> {
        None
    }

    fn framed(modinfo: &str) -> Vec<u8> {
        let mut m = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
        m.extend_from_slice(modinfo.as_bytes());
        m.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
        m
    }

    #[test]
    fn inline_format_of_go_1_18() {
        let mut blob = vec![0u8; 8]; // junk before the aligned blob
        blob.resize(16, 0);
        blob.extend_from_slice(MAGIC);
        blob.extend_from_slice(&[8, 2]);
        blob.resize(16 + 32, 0);
        blob.push(8);
        blob.extend_from_slice(b"go1.21.3");
        let m = framed("path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgoogle.golang.org/grpc\tv1.60.1\th1:x=\ndep\tgolang.org/x/net\tv0.1.0\th1:y=\n=>\t../net\t(devel)\t\nbuild\t-compiler=gc\n");
        blob.push(m.len() as u8 | 0x80);
        blob.push((m.len() >> 7) as u8);
        blob.extend_from_slice(&m);
        let info = parse(&blob, &no_memory).unwrap();
        assert_eq!(info.go_version, "go1.21.3");
        assert_eq!(info.main_path.as_deref(), Some("example.com/app"));
        assert_eq!(info.main_module.as_deref(), Some("example.com/app"));
        assert_eq!(info.dep_version("google.golang.org/grpc"), Some("v1.60.1"));
        assert_eq!(info.dep_version("golang.org/x/net"), Some("(devel)"));
    }

    #[test]
    fn pointer_format_before_go_1_18() {
        // Memory: version string header at 0x1000 -> "go1.16.15" at 0x2000; modinfo header at
        // 0x1010 -> framed text at 0x3000.
        let m = framed("path\tfoo/cmd\nmod\tfoo\t(devel)\t\n");
        let mut mem: Vec<(u64, Vec<u8>)> = Vec::new();
        let hdr = |p: u64, l: u64| [p.to_le_bytes(), l.to_le_bytes()].concat();
        mem.push((0x1000, hdr(0x2000, 9)));
        mem.push((0x1010, hdr(0x3000, m.len() as u64)));
        mem.push((0x2000, b"go1.16.15".to_vec()));
        mem.push((0x3000, m.clone()));
        let read = |addr: u64, len: u64| -> Option<&[u8]> {
            mem.iter()
                .find(|(a, d)| addr >= *a && addr + len <= *a + d.len() as u64)
                .map(|(a, d)| &d[(addr - a) as usize..(addr - a + len) as usize])
        };
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 0]);
        blob.extend_from_slice(&0x1000u64.to_le_bytes());
        blob.extend_from_slice(&0x1010u64.to_le_bytes());
        blob.resize(32, 0);
        let info = parse(&blob, &read).unwrap();
        assert_eq!(info.go_version, "go1.16.15");
        assert_eq!(info.main_path.as_deref(), Some("foo/cmd"));
        assert_eq!(info.main_module.as_deref(), Some("foo"));
    }

    #[test]
    fn misaligned_or_missing_magic() {
        assert_eq!(parse(b"not go at all, not go at all, not go", &no_memory), Err(BuildInfoError::NoMagic));
        let mut blob = vec![0u8; 3];
        blob.extend_from_slice(MAGIC);
        blob.resize(64, 0);
        assert_eq!(parse(&blob, &no_memory), Err(BuildInfoError::NoMagic));
    }
}
