//! Kernel modules for the initramfs: dependency resolution from `modules.dep` (or, when the
//! package has none because `depmod` runs at install time, from each module's `.modinfo`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Modules the guest needs to mount the host root and to run TC programs. Built-in ones
/// (listed in `modules.builtin`) are skipped.
pub const REQUIRED: &[&str] =
    &["virtio", "virtio_ring", "virtio_pci", "9pnet", "9pnet_virtio", "9p", "overlay", "sch_ingress", "cls_bpf"];

/// Extra modules for `--systemd`: the virtio disk with the Debian image (ext4, whose checksums
/// need crc32c), and autofs, which systemd uses for some mount points.
pub const SYSTEMD_ROOT: &[&str] = &["virtio_blk", "crc32c_generic", "ext4", "autofs4"];

/// Module name of a path: file name without `.ko[.xz|.zst|.gz]`, with `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

/// Module names treat `-` and `_` alike.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A parsed `modules.dep`: module name to its path and the paths it depends on.
#[derive(Debug, Default, Clone)]
pub struct ModulesDep {
    pub entries: BTreeMap<String, DepEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    /// Path relative to `/lib/modules/<release>`.
    pub path: String,
    /// Paths of its dependencies (direct, or the full closure as depmod writes it).
    pub deps: Vec<String>,
}

impl ModulesDep {
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').with_context(|| format!("modules.dep line {}: no ':'", n + 1))?;
            let path = path.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries.insert(module_name(&path), DepEntry { path, deps });
        }
        Ok(ModulesDep { entries })
    }

    /// Paths to load, dependencies first, for `wanted` (names). A wanted module that is
    /// neither in `modules.dep` nor in `builtin` is an error; built-in ones are skipped.
    pub fn resolve(&self, wanted: &[&str], builtin: &BTreeSet<String>) -> Result<Vec<String>> {
        let by_path: BTreeMap<&str, &DepEntry> = self.entries.values().map(|e| (e.path.as_str(), e)).collect();
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for w in wanted {
            let name = normalize(w);
            match self.entries.get(&name) {
                Some(e) => self.visit(e, &by_path, &mut done, &mut Vec::new(), &mut order)?,
                None if builtin.contains(&name) => {}
                None => bail!("module {name} is neither in modules.dep nor built in"),
            }
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        e: &'a DepEntry,
        by_path: &BTreeMap<&str, &'a DepEntry>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(&e.path) {
            return Ok(());
        }
        if stack.contains(&e.path) {
            bail!("module dependency cycle: {} -> {}", stack.join(" -> "), e.path);
        }
        stack.push(e.path.clone());
        for d in &e.deps {
            let dep = by_path
                .get(d.as_str())
                .copied()
                .or_else(|| self.entries.get(&module_name(d)))
                .with_context(|| format!("{} depends on {d}, which modules.dep does not list", e.path))?;
            self.visit(dep, by_path, done, stack, order)?;
        }
        stack.pop();
        done.insert(e.path.clone());
        order.push(e.path.clone());
        Ok(())
    }
}

/// Names in a `modules.builtin` file (`kernel/fs/9p/9p.ko` lines).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(module_name).collect()
}

/// Reads a module, decompressing `.ko.xz` / `.ko.zst` / `.ko.gz` with the host's tools.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some(("xz", "xz-utils"))
    } else if name.ends_with(".ko.zst") {
        Some(("zstd", "zstd"))
    } else if name.ends_with(".ko.gz") {
        Some(("gzip", "gzip"))
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("reading {}", path.display())),
        Some((tool, pkg)) => {
            let out =
                Command::new(tool).arg("-dc").arg(path).output().with_context(|| {
                    format!("running {tool} to decompress {} (apt-get install {pkg})", path.display())
                })?;
            if !out.status.success() {
                bail!("{tool} -dc {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(out.stdout)
        }
    }
}

/// Contents of the ELF section `want` of a 64-bit little-endian object.
pub fn elf_section<'a>(elf: &'a [u8], want: &str) -> Result<Option<&'a [u8]>> {
    let u16_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 2).context("truncated ELF")?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as u64)
    };
    let u32_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let u64_at = |o: usize| -> Result<u64> {
        let b = elf.get(o..o + 8).context("truncated ELF")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("not a 64-bit little-endian ELF object");
    }
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    let section = |i: usize| -> Result<(u64, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((u32_at(h)?, u64_at(h + 24)? as usize, u64_at(h + 32)? as usize))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let strtab = elf.get(stroff..stroff + strsize).context("truncated ELF section names")?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let name = strtab.get(name_off as usize..).unwrap_or(&[]);
        let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
        if name == want.as_bytes() {
            return Ok(Some(elf.get(off..off + size).context("truncated ELF section")?));
        }
    }
    Ok(None)
}

/// The `depends=` list of a module's `.modinfo`.
pub fn modinfo_depends(ko: &[u8]) -> Result<Vec<String>> {
    let info = elf_section(ko, ".modinfo")?.context("module has no .modinfo section")?;
    for field in info.split(|&b| b == 0) {
        if let Some(v) = field.strip_prefix(b"depends=") {
            return Ok(String::from_utf8_lossy(v).split(',').filter(|s| !s.is_empty()).map(normalize).collect());
        }
    }
    Ok(Vec::new())
}

/// Writes a `modules.dep`-format text for `wanted` and everything they need, reading each
/// module's `.modinfo` (used when the package ships no `modules.dep`).
pub fn modules_dep_from_modinfo(modules_dir: &Path, wanted: &[&str]) -> Result<String> {
    let mut index: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let p = e.with_context(|| format!("listing {}", dir.display()))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(".ko") {
                let rel = p.strip_prefix(modules_dir).unwrap_or(&p).to_string_lossy().into_owned();
                index.insert(module_name(&rel), rel);
            }
        }
    }
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = wanted.iter().map(|w| normalize(w)).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(rel) = index.get(&name) else {
            continue;
        }; // built in, or absent: resolve() decides
        let deps = modinfo_depends(&read_module(&modules_dir.join(rel))?).with_context(|| format!("reading {rel}"))?;
        let mut dep_paths = Vec::new();
        for d in &deps {
            let p = index
                .get(d)
                .with_context(|| format!("{rel} depends on {d}, which is not in {}", modules_dir.display()))?;
            dep_paths.push(p.clone());
            todo.push(d.clone());
        }
        out.push_str(&format!("{rel}: {}\n", dep_paths.join(" ")));
    }
    Ok(out)
}

/// Modules to load, in order, as (name, absolute path) for a kernel's modules directory.
pub fn modules_for(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let dep_file = modules_dir.join("modules.dep");
    let dep_text = if dep_file.exists() {
        fs::read_to_string(&dep_file).with_context(|| format!("reading {}", dep_file.display()))?
    } else {
        modules_dep_from_modinfo(modules_dir, wanted)?
    };
    let deps = ModulesDep::parse(&dep_text)?;
    let builtin_file = modules_dir.join("modules.builtin");
    let builtin = match fs::read_to_string(&builtin_file) {
        Ok(t) => parse_builtin(&t),
        Err(_) => BTreeSet::new(),
    };
    Ok(deps.resolve(wanted, &builtin)?.into_iter().map(|p| (module_name(&p), modules_dir.join(p))).collect())
}
