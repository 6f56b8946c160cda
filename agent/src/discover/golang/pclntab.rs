//! The function table of `.gopclntab` (Go's `runtime.pcHeader`, read like `debug/gosym`). It
//! survives `-ldflags=-s -w`, so stripped binaries still yield function entry addresses.
//!
//! Supported headers (magic, pointer size 8 or 4, little endian):
//! - `0xfffffff1` (go1.20+) and `0xfffffff0` (go1.18, go1.19): 32-bit entry offsets relative
//!   to `textStart`; `_func` starts with `entryOff u32, nameOff i32`.
//! - `0xfffffffa` (go1.16, go1.17): absolute pointer-sized entries; `_func` starts with
//!   `entry uintptr, nameOff i32`.
//!
//! Older tables (`0xfffffffb`, go1.2-1.15) are recognised but not read: those releases use
//! the stack-based calling convention that the Go probes do not support.

/// A function from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Func {
    pub name: String,
    pub entry: u64,
    /// Up to the next function's entry, so it includes the padding after the function.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Go116,
    Go118,
    Go120,
}

/// Why the table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    #[error("pclntab magic {0:#x} is not a supported format")]
    UnsupportedMagic(u32),
    #[error("malformed pclntab: {0}")]
    Malformed(&'static str),
}

/// Reads every function of the table. `text_start` is the address of `runtime.text` (the
/// `.text` section), used for go1.18+ when the header's copy is unrelocated (0, in PIEs).
pub fn functions(data: &[u8], text_start: Option<u64>) -> Result<(Format, Vec<Func>), PclntabError> {
    let rd = Reader { data };
    let magic = rd.u32(0).ok_or(PclntabError::Malformed("short header"))?;
    let format = match magic {
        0xffff_fff1 => Format::Go120,
        0xffff_fff0 => Format::Go118,
        0xffff_fffa => Format::Go116,
        m => return Err(PclntabError::UnsupportedMagic(m)),
    };
    let ptr = data.get(7).copied().ok_or(PclntabError::Malformed("short header"))? as usize;
    if data[4] != 0 || data[5] != 0 || (ptr != 4 && ptr != 8) {
        return Err(PclntabError::Malformed("header padding or pointer size"));
    }
    let word = |i: usize| rd.uint(8 + i * ptr, ptr).ok_or(PclntabError::Malformed("short header"));
    let nfunc = word(0)? as usize;
    let (text, name_off, func_off) = match format {
        Format::Go116 => (0, word(2)?, word(6)?),
        Format::Go118 | Format::Go120 => {
            let hdr_text = word(2)?;
            let text = if hdr_text != 0 { hdr_text } else { text_start.unwrap_or(0) };
            (text, word(3)?, word(7)?)
        }
    };
    let (name_off, func_off) = (name_off as usize, func_off as usize);
    // functab: nfunc (pc, funcoff) pairs plus the end pc; fields are u32 (1.18+) or uintptr.
    // Every count, offset and address comes from the file: sums are checked, and the count
    // sizes the output only as far as the table's bytes could hold entries.
    let field = if format == Format::Go116 { ptr } else { 4 };
    let functab = |slot: usize| -> Option<u64> { rd.uint(func_off.checked_add(slot.checked_mul(field)?)?, field) };
    let entry_of = |i: usize| -> Option<u64> {
        let v = functab(i.checked_mul(2)?)?;
        if format == Format::Go116 {
            Some(v)
        } else {
            text.checked_add(v)
        }
    };
    let mut out = Vec::with_capacity(nfunc.min(data.len() / (2 * field)));
    for i in 0..nfunc {
        let entry = entry_of(i).ok_or(PclntabError::Malformed("functab"))?;
        let next = entry_of(i + 1).ok_or(PclntabError::Malformed("functab"))?;
        let fo = functab(2 * i + 1).ok_or(PclntabError::Malformed("functab"))? as usize;
        // _func: the entry (u32 offset or uintptr), then nameOff int32.
        let name_at = func_off.checked_add(fo).and_then(|a| a.checked_add(field));
        let noff = name_at.and_then(|a| rd.u32(a)).ok_or(PclntabError::Malformed("_func"))? as usize;
        let name =
            name_off.checked_add(noff).and_then(|a| rd.cstr(a)).ok_or(PclntabError::Malformed("function name"))?;
        out.push(Func { name: String::from_utf8_lossy(name).into_owned(), entry, size: next.saturating_sub(entry) });
    }
    Ok((format, out))
}

/// True if `data` starts like a readable pclntab header (used to find one without sections).
pub fn looks_like_header(data: &[u8]) -> bool {
    data.len() >= 16
        && matches!(u32::from_le_bytes([data[0], data[1], data[2], data[3]]), 0xffff_fff1 | 0xffff_fff0 | 0xffff_fffa)
        && data[4] == 0
        && data[5] == 0
        && matches!(data[6], 1 | 2 | 4)
        && matches!(data[7], 4 | 8)
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        let b = self.data.get(at..at.checked_add(size)?)?;
        Some(b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.uint(at, 4).map(|v| v as u32)
    }
    fn cstr(&self, at: usize) -> Option<&[u8]> {
        let rest = self.data.get(at..)?;
        Some(&rest[..rest.iter().position(|&b| b == 0)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-function go1.16-format table (absolute entries, 8-byte fields).
    fn table_116() -> Vec<u8> {
        let mut t = vec![0xfa, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        let words = [2u64, 0, 0 /* funcnametab */, 0, 0, 0, 0 /* functab */];
        t.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        let names_at = t.len();
        t.extend_from_slice(b"main.main\0runtime.goexit1\0");
        let functab_at = t.len();
        // (entry, funcoff) x2 + end
        let funcs_rel = 5 * 8;
        for (entry, fo) in [(0x401000u64, funcs_rel), (0x401040, funcs_rel + 16)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&(fo as u64).to_le_bytes());
        }
        t.extend_from_slice(&0x401090u64.to_le_bytes());
        for (entry, noff) in [(0x401000u64, 0u32), (0x401040, 10)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&noff.to_le_bytes());
            t.extend_from_slice(&[0; 4]);
        }
        t[8 + 2 * 8..8 + 3 * 8].copy_from_slice(&(names_at as u64).to_le_bytes());
        t[8 + 6 * 8..8 + 7 * 8].copy_from_slice(&(functab_at as u64).to_le_bytes());
        t
    }

    /// The same functions in the go1.18 format (u32 entry offsets from textStart 0x401000).
    fn table_118() -> Vec<u8> {
        let mut t = vec![0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        let names_at = 8 + 8 * 8;
        let functab_at = names_at + 26;
        for w in [2u64, 0, 0x401000, names_at, 0, 0, 0, functab_at] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t.extend_from_slice(b"main.main\0runtime.goexit1\0");
        // (entry, funcoff) x2 + end, then each _func (entryOff, nameOff).
        for w in [0u32, 20, 0x40, 28, 0x90, 0, 0, 0x40, 10] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t
    }

    #[test]
    fn go116_table() {
        let t = table_116();
        assert!(looks_like_header(&t));
        let (fmt, funcs) = functions(&t, None).unwrap();
        assert_eq!(fmt, Format::Go116);
        assert_eq!(
            funcs,
            vec![
                Func { name: "main.main".into(), entry: 0x401000, size: 0x40 },
                Func { name: "runtime.goexit1".into(), entry: 0x401040, size: 0x50 },
            ]
        );
    }

    /// Found with the go_inspect fuzz target: a count of 2^62 functions sized the output
    /// (capacity overflow; smaller huge counts make an allocation that aborts the agent), and
    /// offsets near 2^64 overflowed the sums.
    #[test]
    fn huge_counts_and_offsets_are_errors() {
        let word = |t: &mut Vec<u8>, i: usize, v: u64| t[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        for (i, v) in [(0, 1 << 62), (0, 1 << 40), (0, u64::MAX), (6, u64::MAX - 8), (6, u64::MAX), (2, u64::MAX)] {
            let mut t = table_116();
            word(&mut t, i, v);
            assert!(functions(&t, None).is_err(), "word {i} = {v:#x}");
        }
        // go1.18+: textStart plus an entry's offset past 2^64.
        let mut t = table_118();
        assert_eq!(
            functions(&t, None).unwrap().1[1],
            Func { name: "runtime.goexit1".into(), entry: 0x401040, size: 0x50 }
        );
        word(&mut t, 2, u64::MAX - 0x20);
        assert!(functions(&t, None).is_err());
    }

    #[test]
    fn old_and_bad_tables_are_errors() {
        let mut t = table_116();
        t[0] = 0xfb;
        assert_eq!(functions(&t, None), Err(PclntabError::UnsupportedMagic(0xffff_fffb)));
        assert!(functions(&table_116()[..40], None).is_err());
    }
}
