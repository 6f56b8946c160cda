//! Fetching kernel packages with `apt-get download` through a private apt configuration
//! under the cache directory. The system's apt sources are only read, to reuse its mirror.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::kernels::{KernelSpec, KernelsFile, Mirrors};

/// The keyring Debian's own sources use (package `debian-archive-keyring`).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Debian codenames and aliases recognised when reading the system's sources.
const CODENAMES: &[&str] =
    &["buster", "bullseye", "bookworm", "trixie", "forky", "sid", "stable", "oldstable", "testing", "unstable"];

/// Reads the mirrors from apt sources files (one-line `.list` and deb822 `.sources`), each
/// given as (file name, contents). Only Debian suites count; the first hit of each kind wins.
pub fn mirrors_from_sources(files: &[(String, String)], fallback: &Mirrors) -> Mirrors {
    let mut debian: Option<String> = None;
    let mut security: Option<String> = None;
    let mut note = |uri: &str, suite: &str| {
        let uri = uri.trim_end_matches('/').to_string();
        let (base, kind) = match suite.split_once('-') {
            Some((b, k)) => (b, k),
            None => (suite, ""),
        };
        if !CODENAMES.contains(&base) {
            return;
        }
        match kind {
            "security" => {
                security.get_or_insert(uri);
            }
            "" | "updates" => {
                debian.get_or_insert(uri);
            }
            _ => {}
        }
    };
    for (name, text) in files {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let mut types = String::new();
                let mut uris = String::new();
                let mut suites = String::new();
                let mut enabled = true;
                for line in stanza.lines() {
                    if line.starts_with('#') {
                        continue;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "types" => types = v.trim().to_string(),
                            "uris" => uris = v.trim().to_string(),
                            "suites" => suites = v.trim().to_string(),
                            "enabled" => enabled = v.trim() != "no",
                            _ => {}
                        }
                    }
                }
                if !enabled || !types.split_whitespace().any(|t| t == "deb") {
                    continue;
                }
                for uri in uris.split_whitespace() {
                    for suite in suites.split_whitespace() {
                        note(uri, suite);
                    }
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                let mut words = line.split_whitespace();
                if words.next() != Some("deb") {
                    continue;
                }
                let mut rest: Vec<&str> = words.collect();
                if rest.first().is_some_and(|w| w.starts_with('[')) {
                    // Skip the `[opt=val ...]` block.
                    let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                    rest.drain(..=end);
                }
                if let [uri, suite, ..] = rest.as_slice() {
                    note(uri, suite);
                }
            }
        }
    }
    Mirrors {
        debian: debian.unwrap_or_else(|| fallback.debian.clone()),
        security: security.unwrap_or_else(|| fallback.security.clone()),
    }
}

/// The system's mirrors, read from `/etc/apt/sources.list` and `/etc/apt/sources.list.d/`.
pub fn system_mirrors(fallback: &Mirrors) -> Mirrors {
    let mut files = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), t));
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut entries: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if let (Some(name), Ok(t)) = (p.file_name().and_then(|n| n.to_str()), fs::read_to_string(&p)) {
                files.push((name.to_string(), t));
            }
        }
    }
    mirrors_from_sources(&files, fallback)
}

/// The private `sources.list`: one line per suite any kernel needs.
pub fn sources_list(kernels: &KernelsFile, mirrors: &Mirrors) -> String {
    let mut out = String::from("# Written by vm-tests; the system's apt sources are not used.\n");
    // Each codename with its security suite, so `--available` shows both.
    let mut suites = std::collections::BTreeSet::new();
    for s in kernels.suites() {
        let base = s.split('-').next().unwrap_or(&s).to_string();
        suites.insert(format!("{base}-security"));
        suites.insert(base);
        suites.insert(s);
    }
    for suite in suites {
        let uri = if suite.ends_with("-security") { &mirrors.security } else { &mirrors.debian };
        out.push_str(&format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"));
    }
    out
}

/// An exclusive `flock` on a file, released on drop (so concurrent runs share one cache).
pub struct CacheLock {
    _file: fs::File,
}

impl CacheLock {
    pub fn acquire(path: &Path) -> Result<Self> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; blocks until the lock is free.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {}", path.display()));
        }
        Ok(CacheLock { _file: f })
    }
}

/// A private apt configuration rooted at `<cache>/apt`.
pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    pub fn new(cache: &Path) -> Self {
        PrivateApt { root: cache.join("apt") }
    }

    fn options(&self) -> Vec<String> {
        let r = &self.root;
        vec![
            format!("-oDir::Etc::sourcelist={}", r.join("sources.list").display()),
            "-oDir::Etc::sourceparts=-".into(),
            "-oDir::Etc::preferences=/dev/null".into(),
            "-oDir::Etc::preferencesparts=-".into(),
            format!("-oDir::State::Lists={}", r.join("lists").display()),
            format!("-oDir::Cache={}", r.join("cache").display()),
            "-oDir::State::status=/dev/null".into(),
            "-oAPT::Architecture=amd64".into(),
            "-oAPT::Architectures=amd64".into(),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    /// Writes the sources list; returns true when it changed (lists must be refreshed).
    pub fn configure(&self, sources: &str) -> Result<bool> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.root.join(d))
                .with_context(|| format!("creating {}", self.root.join(d).display()))?;
        }
        let path = self.root.join("sources.list");
        if fs::read_to_string(&path).ok().as_deref() == Some(sources) {
            return Ok(false);
        }
        fs::write(&path, sources).with_context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }

    fn run(&self, tool: &str, args: &[&str], cwd: Option<&Path>) -> Result<std::process::Output> {
        let mut cmd = Command::new(tool);
        cmd.args(self.options()).args(args);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.output().with_context(|| format!("running {tool} (is apt installed?)"))
    }

    pub fn update(&self) -> Result<()> {
        eprintln!("vm-tests: apt-get update (private lists in {})", self.root.join("lists").display());
        let out = self.run("apt-get", &["-q", "update"], None)?;
        if !out.status.success() {
            bail!("apt-get update failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// True when the current lists know `package=version`.
    pub fn knows(&self, k: &KernelSpec) -> Result<bool> {
        let out = self.run("apt-cache", &["show", &format!("{}={}", k.package, k.version)], None)?;
        Ok(out.status.success() && !out.stdout.is_empty())
    }

    /// Versions of linux-image packages of the same flavour the lists have, for error messages.
    pub fn similar(&self, k: &KernelSpec) -> Result<String> {
        let series: String = k.version.split('.').take(2).collect::<Vec<_>>().join("\\.");
        let pattern = format!("^linux-image-{series}.*-amd64-unsigned$");
        let out = self.run("apt-cache", &["search", "--names-only", &pattern], None)?;
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let mut lines = Vec::new();
        for n in names {
            let out = self.run("apt-cache", &["madison", &n], None)?;
            lines.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("  {}", l.trim())));
        }
        Ok(lines.join("\n"))
    }

    pub fn download(&self, k: &KernelSpec, dest: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        eprintln!("vm-tests: apt-get download {}={}", k.package, k.version);
        let spec = format!("{}={}", k.package, k.version);
        let out = self.run("apt-get", &["-q", "download", &spec], Some(dest))?;
        if !out.status.success() {
            bail!("apt-get download {spec} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let deb = dest.join(k.deb_file_name());
        if !deb.exists() {
            bail!("apt-get download {spec} succeeded but {} is missing", deb.display());
        }
        Ok(deb)
    }
}

/// An extracted kernel package.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// Root of the extracted package.
    pub root: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `/lib/modules/<release>` inside the tree.
    pub modules: PathBuf,
}

impl KernelTree {
    /// Finds vmlinuz and the modules directory in an extracted package.
    pub fn open(root: &Path) -> Result<Self> {
        for lib in ["lib/modules", "usr/lib/modules"] {
            let dir = root.join(lib);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let releases: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
            let [release] = releases.as_slice() else {
                bail!("expected one kernel release in {}, found {releases:?}", dir.display());
            };
            let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
            if !vmlinuz.exists() {
                bail!("{} is missing", vmlinuz.display());
            }
            return Ok(KernelTree {
                root: root.to_path_buf(),
                release: release.clone(),
                vmlinuz,
                modules: dir.join(release),
            });
        }
        bail!("no lib/modules in {}", root.display())
    }
}

/// Makes sure kernel `k` is downloaded and extracted under `cache`; returns its tree.
/// Skips all network access when the package was extracted before.
pub fn ensure_kernel(cache: &Path, kernels: &KernelsFile, k: &KernelSpec) -> Result<KernelTree> {
    fs::create_dir_all(cache).with_context(|| format!("creating cache directory {}", cache.display()))?;
    let tree_dir = cache.join("kernels").join(k.dir_name());
    if tree_dir.exists() {
        return KernelTree::open(&tree_dir);
    }
    let _lock = CacheLock::acquire(&cache.join("lock"))?;
    if tree_dir.exists() {
        return KernelTree::open(&tree_dir); // another run extracted it while we waited
    }
    let debs = cache.join("debs");
    let deb = debs.join(k.deb_file_name());
    if !deb.exists() {
        let apt = PrivateApt::new(cache);
        let mirrors = system_mirrors(&kernels.mirrors);
        let changed = apt.configure(&sources_list(kernels, &mirrors))?;
        if changed || !apt.knows(k)? {
            apt.update()?;
        }
        if !apt.knows(k)? {
            bail!(
                "{}={} is not in the private apt lists (suite {}; mirrors {} and {}); \
                 update vm-tests/kernels.toml. Available:\n{}",
                k.package,
                k.version,
                k.suite,
                mirrors.debian,
                mirrors.security,
                apt.similar(k).unwrap_or_default()
            );
        }
        apt.download(k, &debs)?;
    }
    let tmp = cache.join("kernels").join(format!(".{}.tmp", k.dir_name()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    eprintln!("vm-tests: extracting {}", deb.display());
    let status =
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp).status().context("running dpkg-deb (package dpkg)")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    KernelTree::open(&tmp).with_context(|| format!("checking the contents of {}", deb.display()))?;
    fs::rename(&tmp, &tree_dir).with_context(|| format!("renaming {} to {}", tmp.display(), tree_dir.display()))?;
    KernelTree::open(&tree_dir)
}
