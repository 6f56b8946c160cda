//! The ELF facts the Go inspection needs: loadable segments (virtual address → file offset, for
//! uprobes), named sections, and reads of the program's initialised memory.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_vaddr`: link-time virtual address of the segment's first byte.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_offset`: where the segment's bytes start in the file.
    pub offset: u64,
    /// `p_filesz`: bytes backed by the file (the rest up to `memsz` is zero-filled).
    pub filesz: u64,
    /// `p_flags` (`PF_X` = 1, `PF_W` = 2, `PF_R` = 4).
    pub flags: u32,
}

impl LoadSegment {
    /// True for an executable segment.
    pub fn is_exec(&self) -> bool {
        self.flags & elf::PF_X != 0
    }
}

/// Architectures we know about (only x86-64 can have its returns found today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Other(u16),
}

/// A parsed ELF file plus its bytes.
pub struct Image<'a> {
    pub data: &'a [u8],
    pub file: ElfFile64<'a, Endianness>,
    pub segments: Vec<LoadSegment>,
}

impl<'a> Image<'a> {
    /// Parses a 64-bit ELF; `None` for anything else.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let file = ElfFile64::<Endianness>::parse(data).ok()?;
        let endian = file.endian();
        let segments = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| LoadSegment {
                vaddr: ph.p_vaddr(endian),
                memsz: ph.p_memsz(endian),
                offset: ph.p_offset(endian),
                filesz: ph.p_filesz(endian),
                flags: ph.p_flags(endian),
            })
            .collect();
        Some(Image { data, file, segments })
    }

    pub fn arch(&self) -> Arch {
        match self.file.elf_header().e_machine(self.file.endian()) {
            elf::EM_X86_64 => Arch::X86_64,
            elf::EM_AARCH64 => Arch::Aarch64,
            m => Arch::Other(m),
        }
    }

    /// `ET_DYN` (PIE): the kernel loads it at a random base; uprobes still take file offsets.
    pub fn is_pie(&self) -> bool {
        self.file.elf_header().e_type(self.file.endian()) == elf::ET_DYN
    }

    /// The uncompressed contents of a section, by name.
    pub fn section(&self, name: &str) -> Option<(u64, std::borrow::Cow<'a, [u8]>)> {
        let s = self.file.section_by_name(name)?;
        let data = s.uncompressed_data().ok()?;
        Some((s.address(), data))
    }

    /// Address of a symbol in `.symtab`, if the table is there.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.file.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address())
    }

    /// `len` bytes of initialised memory at virtual address `addr` (from a loadable segment).
    pub fn read(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        read(&self.segments, self.data, addr, len)
    }
}

/// [`Image::read`] over `segments` of the file `data`. The program headers come from the
/// file, so no sum of theirs is trusted not to overflow.
fn read<'a>(segments: &[LoadSegment], data: &'a [u8], addr: u64, len: u64) -> Option<&'a [u8]> {
    addr.checked_add(len)?;
    let (seg, at) = segments.iter().find_map(|s| {
        let at = addr.checked_sub(s.vaddr)?;
        (at <= s.filesz && len <= s.filesz - at).then_some((s, at))
    })?;
    let start = usize::try_from(seg.offset.checked_add(at)?).ok()?;
    data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// The file offset of virtual address `addr` (what `attach_uprobe` takes), if a `PT_LOAD`
/// segment maps it from the file.
pub fn file_offset(segments: &[LoadSegment], addr: u64) -> Option<u64> {
    let (seg, at) = segments.iter().find_map(|s| {
        let at = addr.checked_sub(s.vaddr)?;
        (at < s.filesz).then_some((s, at))
    })?;
    seg.offset.checked_add(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_offset_uses_the_segment_that_maps_the_address() {
        let segs = [
            LoadSegment { vaddr: 0x400000, memsz: 0x2000, offset: 0, filesz: 0x2000, flags: 5 },
            LoadSegment { vaddr: 0x603000, memsz: 0x3000, offset: 0x2000, filesz: 0x1000, flags: 6 },
        ];
        assert_eq!(file_offset(&segs, 0x401234), Some(0x1234));
        assert_eq!(file_offset(&segs, 0x603010), Some(0x2010));
        // .bss part of the data segment: not in the file.
        assert_eq!(file_offset(&segs, 0x604010), None);
        assert_eq!(file_offset(&segs, 0x100), None);
    }

    /// Found with the go_inspect fuzz target: a segment whose `p_vaddr + p_filesz` or
    /// `p_offset` plus an address's distance into it passes 2^64 overflowed the sums.
    #[test]
    fn segments_near_the_end_of_the_address_space() {
        let data = [7u8; 0x40];
        let segs = [
            LoadSegment { vaddr: 0x1000, memsz: 0x10, offset: u64::MAX - 4, filesz: 0x10, flags: 5 },
            LoadSegment { vaddr: u64::MAX - 0x10, memsz: u64::MAX, offset: 0x10, filesz: u64::MAX, flags: 5 },
        ];
        assert_eq!(file_offset(&segs, 0x1008), None);
        assert_eq!(read(&segs, &data, 0x1008, 1), None);
        assert_eq!(file_offset(&segs, u64::MAX - 8), Some(0x18));
        assert_eq!(read(&segs, &data, u64::MAX - 8, 8), Some(&data[0x18..0x20]));
        assert_eq!(read(&segs, &data, u64::MAX - 8, 9), None);
        assert_eq!(read(&segs, &data, u64::MAX - 8, u64::MAX), None);
        assert_eq!(read(&segs, &data, 0, 1), None);
    }
}
