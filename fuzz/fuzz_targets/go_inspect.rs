//! The Go executable readers (`discover::golang`: ELF, `.go.buildinfo`, `.gopclntab`, DWARF,
//! `.symtab`, the x86-64 prologue/`RET`/`CALL` scan, the offsets table) on mutated real Go
//! executables, and their parsers on raw bytes.
//!
//! The first byte is the mode; `mode & 3`:
//! - 0: `inspect_bytes` (then `GoBinary::support`) on the base executable, patched by the
//!   records that follow. The base is a real Go program linking net/http with uncompressed
//!   DWARF (`scripts/fuzz.sh` builds `testapps/go-http` with `-ldflags=-compressdwarf=false`
//!   into `fuzz/target/go-base/go-http`; `BEYLA_FUZZ_GO_BASE` names another), read once
//!   before AFL's fork server starts and patched in a working copy that is restored after
//!   each run. Mode bits 2-4 first apply a variant: bit 2 renames `.debug_info` (no DWARF,
//!   the offsets table instead; the walk over all of the DWARF is most of an execution's
//!   time, see docs/fuzzing.md), bit 3 turns `.symtab` into a plain section (functions from
//!   `.gopclntab`), bit 4 drops the section header table (build info from the first
//!   writable segment, the pclntab found by scanning the read-only segments), bit 5 narrows
//!   `.debug_info` to the one unit that holds the probed structs (Go's linker puts every
//!   type in the `runtime` unit; a fifth of the DWARF).
//! - 1: `buildinfo::parse` on the rest, which is also the memory that pre-1.18 pointers
//!   read (address 0 = the rest's first byte).
//! - 2: `pclntab::looks_like_header` and `pclntab::functions` on the rest (`text_start`
//!   0x401000 when bit 2 is set, else none).
//! - 3: bit 2 set: `inspect_bytes` on the rest as a whole file; clear: the x86-64 scans
//!   (`ret::x86_64_{ret,call,body}_offsets`) on the rest as code at 0x401000.
//!
//! A record is `[op][region][offset: u32 le][n][payload]`: `region % REGIONS.len()` picks a
//! region of the base (the list below: ELF headers, sections, the parts of `.gopclntab`,
//! `.symtab` and DWARF the inspection reads for the probed functions and structs, their code)
//! and `offset` modulo its length a byte in it (a region of several ranges counts them one
//! after the other). `op % 5`: 0 writes the `n` payload bytes there; 1 writes `n` copies of
//! the one payload byte; 2 writes the low `[1, 2, 4, 8][n % 4]` bytes of the 8-byte payload
//! (a little-endian integer: 0, all ones, large); 3 adds the 4-byte signed payload to the
//! little-endian integer of that width there (wrapping); 4 truncates the file there (no
//! payload). Writes stop at the end of the file; a record on a region the base lacks is
//! skipped; a short last record is dropped.
//!
//! Any outcome but a panic is fine; an error must say something.
use std::ops::Range;
use std::path::{Path, PathBuf};

use beyla::discover::golang::offsets::FIELDS;
use beyla::discover::golang::{buildinfo, inspect_bytes, pclntab, ret, PROBED_FUNCTIONS};

/// The regions records choose from, by index (see [`regions`]).
const REGIONS: &[&str] = &[
    "file",
    "elf_header",
    "program_headers",
    "section_headers",
    ".shstrtab",
    ".go.buildinfo",
    ".gopclntab header",
    ".gopclntab funcnametab",
    ".gopclntab functab",
    ".gopclntab probed entries",
    ".gopclntab",
    ".debug_info",
    ".debug_info probed structs",
    ".debug_abbrev",
    ".debug_line",
    ".debug_str",
    ".symtab",
    ".strtab",
    ".symtab probed entries",
    "probed code",
    "probed prologues",
];

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;

/// The base executable and its regions.
struct Base {
    data: Vec<u8>,
    /// One entry per [`REGIONS`] name: file ranges, empty when the base lacks it.
    regions: Vec<Vec<Range<usize>>>,
    /// The section header of `.symtab` and where `.debug_info`'s name is in `.shstrtab`.
    symtab_header: Option<usize>,
    debug_info_name: Option<usize>,
    /// `.debug_info`'s section header, and the file range of the unit holding the structs.
    debug_info_unit: Option<(usize, Range<usize>)>,
}

fn u16_at(d: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([d[at], d[at + 1]]))
}

fn u32_at(d: &[u8], at: usize) -> usize {
    u32::from_le_bytes(d[at..at + 4].try_into().expect("4 bytes")) as usize
}

fn u64_at(d: &[u8], at: usize) -> usize {
    u64::from_le_bytes(d[at..at + 8].try_into().expect("8 bytes")) as usize
}

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// Reads the base (a 64-bit little-endian ELF Go executable, as built by `scripts/fuzz.sh`)
/// and finds its regions; panics with a message when it is not usable.
fn load_base(path: &Path) -> Base {
    let data = std::fs::read(path)
        .unwrap_or_else(|e| panic!("reading the go_inspect base {} (scripts/fuzz.sh builds it): {e}", path.display()));
    assert!(data.starts_with(b"\x7fELF\x02\x01"), "{}: not a 64-bit little-endian ELF", path.display());
    let pristine = inspect_bytes(path, &data).unwrap_or_else(|e| panic!("the go_inspect base: {e}"));
    assert!(!pristine.functions.is_empty(), "the go_inspect base has none of the probed functions");

    let (phoff, phentsize, phnum) = (u64_at(&data, 0x20), u16_at(&data, 0x36), u16_at(&data, 0x38));
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(&data, 0x28), u16_at(&data, 0x3a), u16_at(&data, 0x3c), u16_at(&data, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let shstr = u64_at(&data, header(shstrndx) + 0x18);
    let mut sections = Vec::new(); // (name, name offset in the file, header offset, file range)
    for i in 0..shnum {
        let h = header(i);
        let name_at = shstr + u32_at(&data, h);
        let name_len = data[name_at..].iter().position(|&b| b == 0).expect("section name");
        let name = String::from_utf8_lossy(&data[name_at..name_at + name_len]).into_owned();
        let (off, size) = (u64_at(&data, h + 0x18), u64_at(&data, h + 0x20));
        let range = if u32_at(&data, h + 4) == 8 { off..off } else { off..off + size }; // NOBITS
        sections.push((name, name_at, h, range));
    }
    let section = |name: &str| sections.iter().find(|s| s.0 == name);
    let range = |name: &str| section(name).map(|s| s.3.clone()).into_iter().collect::<Vec<_>>();
    let mut regions: Vec<Vec<Range<usize>>> = REGIONS.iter().map(|_| Vec::new()).collect();
    let mut set = |name: &str, ranges: Vec<Range<usize>>| {
        let i = REGIONS.iter().position(|r| *r == name).expect("region name");
        regions[i] = ranges.into_iter().filter(|r| !r.is_empty() && r.end <= data.len()).collect();
    };
    set("file", vec![0..data.len()]);
    set("elf_header", vec![0..64]);
    set("program_headers", vec![phoff..phoff + phentsize * phnum]);
    set("section_headers", vec![shoff..shoff + shentsize * shnum]);
    for name in [".shstrtab", ".go.buildinfo", ".gopclntab", ".debug_info", ".debug_abbrev"] {
        set(name, range(name));
    }
    for name in [".debug_line", ".debug_str", ".symtab", ".strtab"] {
        set(name, range(name));
    }

    // The pclntab's parts (go1.18+ layout: magic, pads, ptrsize, then nfunc, nfiles, textStart,
    // funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset).
    let mut probed_entries = Vec::new();
    if let Some(p) = range(".gopclntab").pop() {
        let t = &data[p.clone()];
        if matches!(u32_at(t, 0), 0xffff_fff0 | 0xffff_fff1) && t[7] == 8 {
            let word = |i: usize| u64_at(t, 8 + 8 * i);
            let (nfunc, names, cu, pcln) = (word(0), word(3), word(4), word(7));
            let functab = pcln..pcln + (2 * nfunc + 1) * 4;
            for i in 0..nfunc {
                let fo = u32_at(t, functab.start + 8 * i + 4);
                let func = pcln + fo;
                let name = names + u32_at(t, func + 4);
                let len = t[name..].iter().position(|&b| b == 0).expect("function name");
                if PROBED_FUNCTIONS.iter().any(|f| f.as_bytes() == &t[name..name + len]) {
                    let at = p.start + functab.start + 8 * i;
                    probed_entries.extend([at..at + 8, p.start + func..p.start + func + 8]);
                    probed_entries.push(p.start + name..p.start + name + len + 1);
                }
            }
            set(".gopclntab header", vec![p.start..p.start + 8 + 8 * 8]);
            set(".gopclntab funcnametab", vec![p.start + names..p.start + cu]);
            set(".gopclntab functab", vec![p.start + functab.start..p.start + functab.end]);
        }
    }
    set(".gopclntab probed entries", probed_entries);

    // The DIEs of the structs whose members are read: each from its name (an inline string in
    // Go's DWARF) to a bit past its members. Names inside other types' names do not count.
    let mut structs = Vec::new();
    let mut unit = None;
    if let Some(info) = range(".debug_info").pop() {
        let mut names: Vec<&str> = FIELDS.iter().flat_map(|f| f.structs.iter().copied()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let needle = [name.as_bytes(), b"\0"].concat();
            let own = find(&data[info.clone()], &needle).into_iter().find(|&i| {
                i > 0
                    && !matches!(data[info.start + i - 1], b'*' | b']' | b' ' | b'.' | b'/' | b'_')
                    && !data[info.start + i - 1].is_ascii_alphanumeric()
            });
            if let Some(i) = own {
                let at = info.start + i - 1;
                structs.push(at..(at + 512).min(info.end));
            }
        }
        // The unit (32-bit DWARF: a u32 length, then the rest) holding the first struct.
        let mut at = info.start;
        while let Some(first) = structs.first().filter(|_| at + 4 <= info.end) {
            let end = at + 4 + u32_at(&data, at);
            if (at..end).contains(&first.start) {
                let header = section(".debug_info").map(|s| s.2).expect(".debug_info");
                unit = Some((header, at..end.min(info.end)));
                break;
            }
            at = end;
        }
    }
    set(".debug_info probed structs", structs);

    // The probed functions' `.symtab` entries and names.
    let mut symbols = Vec::new();
    if let (Some(symtab), Some(strtab)) = (range(".symtab").pop(), range(".strtab").pop()) {
        for at in symtab.clone().step_by(24) {
            let name = strtab.start + u32_at(&data, at);
            let len = data[name..].iter().position(|&b| b == 0).expect("symbol name");
            if PROBED_FUNCTIONS.iter().any(|f| f.as_bytes() == &data[name..name + len]) {
                symbols.extend([at..at + 24, name..name + len + 1]);
            }
        }
    }
    set(".symtab probed entries", symbols);

    let code = |f: &beyla::discover::golang::GoFunction, len: u64| {
        let start = f.file_offset as usize;
        start..start + len.min(f.size) as usize
    };
    set("probed code", pristine.functions.iter().map(|f| code(f, f.size)).collect());
    set("probed prologues", pristine.functions.iter().map(|f| code(f, 32)).collect());

    Base {
        symtab_header: sections.iter().find(|s| u32_at(&data, s.2 + 4) == SHT_SYMTAB as usize).map(|s| s.2),
        debug_info_name: section(".debug_info").map(|s| s.1),
        debug_info_unit: unit,
        regions,
        data,
    }
}

/// The working copy of the base: patched for one run, then restored.
struct Work<'a> {
    base: &'a Base,
    data: Vec<u8>,
    len: usize,
    dirty: Vec<Range<usize>>,
}

impl Work<'_> {
    fn write(&mut self, at: usize, bytes: &[u8]) {
        let end = (at + bytes.len()).min(self.data.len());
        if at < end {
            self.data[at..end].copy_from_slice(&bytes[..end - at]);
            self.dirty.push(at..end);
        }
    }

    fn read_uint(&self, at: usize, width: usize) -> u64 {
        let end = (at + width).min(self.data.len());
        self.data[at..end].iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
    }

    fn restore(&mut self) {
        for r in self.dirty.drain(..) {
            self.data[r.clone()].copy_from_slice(&self.base.data[r]);
        }
        self.len = self.data.len();
    }

    /// The file position of `offset` in region `region`, if the base has the region.
    fn position(&self, region: u8, offset: u32) -> Option<usize> {
        let ranges = &self.base.regions[usize::from(region) % REGIONS.len()];
        let total: usize = ranges.iter().map(|r| r.len()).sum();
        if total == 0 {
            return None;
        }
        let mut at = offset as usize % total;
        for r in ranges {
            if at < r.len() {
                return Some(r.start + at);
            }
            at -= r.len();
        }
        None
    }

    /// Applies the mode's variant and the records.
    fn patch(&mut self, mode: u8, mut rest: &[u8]) {
        if mode & 4 != 0 {
            if let Some(at) = self.base.debug_info_name {
                self.write(at + 1, b"x");
            }
        }
        if mode & 8 != 0 {
            if let Some(h) = self.base.symtab_header {
                self.write(h + 4, &SHT_PROGBITS.to_le_bytes());
            }
        }
        if mode & 32 != 0 {
            if let Some((h, unit)) = self.base.debug_info_unit.clone() {
                self.write(h + 0x18, &(unit.start as u64).to_le_bytes());
                self.write(h + 0x20, &(unit.len() as u64).to_le_bytes());
            }
        }
        if mode & 16 != 0 {
            self.write(0x28, &[0; 8]); // e_shoff
            self.write(0x3c, &[0; 4]); // e_shnum, e_shstrndx
        }
        const WIDTHS: [usize; 4] = [1, 2, 4, 8];
        while rest.len() >= 7 {
            let (op, region, n) = (rest[0] % 5, rest[1], rest[6]);
            let offset = u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]);
            rest = &rest[7..];
            let need = match op {
                0 => usize::from(n),
                1 => 1,
                2 => 8,
                3 => 4,
                _ => 0,
            };
            if rest.len() < need {
                return;
            }
            let (payload, next) = rest.split_at(need);
            rest = next;
            let Some(at) = self.position(region, offset) else { continue };
            let width = WIDTHS[usize::from(n % 4)];
            match op {
                0 => self.write(at, payload),
                1 => self.write(at, &vec![payload[0]; usize::from(n)]),
                2 => self.write(at, &payload[..width]),
                3 => {
                    let delta = i32::from_le_bytes(payload.try_into().expect("4 bytes")) as i64 as u64;
                    let v = self.read_uint(at, width).wrapping_add(delta);
                    self.write(at, &v.to_le_bytes()[..width]);
                }
                _ => self.len = self.len.min(at),
            }
        }
    }
}

fn main() {
    let base_path = std::env::var_os("BEYLA_FUZZ_GO_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-base/go-http"));
    let base = load_base(&base_path);
    let mut work = Work { base: &base, data: base.data.clone(), len: base.data.len(), dirty: Vec::new() };
    let exe = Path::new("/fuzz/go-base");
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else { return };
        match mode & 3 {
            0 => {
                work.patch(mode, rest);
                match inspect_bytes(exe, &work.data[..work.len]) {
                    Ok(bin) => drop(bin.support()),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
                work.restore();
            }
            1 => {
                let memory = |addr: u64, len: u64| -> Option<&[u8]> {
                    let start = usize::try_from(addr).ok()?;
                    rest.get(start..start.checked_add(usize::try_from(len).ok()?)?)
                };
                if let Err(e) = buildinfo::parse(rest, &memory) {
                    assert!(!e.to_string().is_empty());
                }
            }
            2 => {
                let _ = pclntab::looks_like_header(rest);
                let text = (mode & 4 != 0).then_some(0x401000);
                if let Ok((_, funcs)) = pclntab::functions(rest, text) {
                    assert!(funcs.len() <= rest.len());
                }
            }
            _ if mode & 4 != 0 => {
                if let Err(e) = inspect_bytes(exe, rest) {
                    assert!(!e.to_string().is_empty());
                }
            }
            _ => {
                let addr = 0x401000;
                let target = addr + u64::from(rest.first().copied().unwrap_or(0));
                for o in ret::x86_64_ret_offsets(rest, addr) {
                    assert!(o < rest.len() as u64);
                }
                for o in ret::x86_64_call_offsets(rest, addr, target) {
                    assert!(o < rest.len() as u64);
                }
                if let Some(o) = ret::x86_64_body_offset(rest, addr) {
                    assert!(o < rest.len() as u64);
                }
            }
        }
    });
}
