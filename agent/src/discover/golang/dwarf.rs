//! Struct member offsets from the binary's DWARF (`.debug_info`, zlib-compressed by Go's
//! linker, decompressed by `object`).

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{EndianSlice, LittleEndian};

use super::elf::Image;
use super::offsets::{Offsets, FIELDS};

/// Why DWARF could not be read (a missing `.debug_info` is `Ok(None)` instead).
#[derive(Debug, thiserror::Error)]
#[error("reading DWARF")]
pub struct DwarfError(#[source] pub gimli::Error);

/// Reads the member offsets of [`FIELDS`] from DWARF; `Ok(None)` when there is no DWARF
/// (`-ldflags=-w`, `strip`).
pub fn read_offsets(image: &Image<'_>) -> Result<Option<Offsets>, DwarfError> {
    let Some((_, info)) = image.section(".debug_info") else {
        return Ok(None);
    };
    if info.is_empty() {
        return Ok(None);
    }
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(image.section(id.name()).map(|(_, d)| d).unwrap_or(Cow::Borrowed(&[])))
    })
    .map_err(DwarfError)?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));

    // struct name -> members wanted from it
    let mut wanted: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for f in FIELDS {
        for s in f.structs {
            wanted.entry(s).or_default().push((f.member, f.name));
        }
    }
    let mut out = Offsets::default();
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(DwarfError)? {
        let unit = dwarf.unit(header).map_err(DwarfError)?;
        let mut cursor = unit.entries();
        // (depth of the struct entry, its wanted members)
        let mut current: Option<(isize, &Vec<(&str, &str)>)> = None;
        while let Some(entry) = cursor.next_dfs().map_err(DwarfError)? {
            let tag = entry.tag();
            let (name, loc) = if tag == gimli::DW_TAG_structure_type || tag == gimli::DW_TAG_member {
                let loc = entry.attr_value(gimli::DW_AT_data_member_location).and_then(|v| v.udata_value());
                (entry.attr_value(gimli::DW_AT_name), loc)
            } else {
                (None, None)
            };
            let depth = cursor.depth();
            if current.is_some_and(|(d, _)| depth <= d) {
                current = None;
            }
            let Some(name) = name else { continue };
            let name = dwarf.attr_string(&unit, name).map_err(DwarfError)?;
            if tag == gimli::DW_TAG_structure_type {
                if let Some(members) = std::str::from_utf8(name.slice()).ok().and_then(|n| wanted.get(n)) {
                    current = Some((depth, members));
                }
                continue;
            }
            let (Some((d, members)), Some(loc)) = (current, loc) else { continue };
            if depth != d + 1 {
                continue;
            }
            for (member, field) in members {
                if name.slice() == member.as_bytes() && out.get(field).is_none() {
                    out.set(field, loc);
                }
            }
        }
    }
    Ok(Some(out))
}
