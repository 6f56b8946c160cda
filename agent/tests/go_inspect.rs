//! `discover::golang` on real Go binaries built here: go-http and the gRPC demo worker with
//! Debian's go1.19 and with go1.23 (bookworm-backports, `testapps/fetch-go.sh`), unstripped and
//! stripped. Needs the Go toolchains (scripts/setup.sh) but no root; a missing toolchain fails.
//! Tests that build Go are named `gobuild_*` (the Nix package's sandbox has no Debian Go and
//! skips them by that name, as it skips `root_*`).
//!
//! `cargo test -p beyla --test go_inspect -- --nocapture gobuild_fallback_table_matches_dwarf` prints the
//! measured offsets as the rows of `offsets::FALLBACK`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use beyla::discover::golang::offsets::{Lib, FALLBACK, FIELDS};
use beyla::discover::golang::pclntab::Format;
use beyla::discover::golang::{inspect, symbols, GoBinary, GoSupport, OffsetSource, SymbolSource, PROBED_FUNCTIONS};
use object::{Object, ObjectSection, ObjectSymbol};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The binaries built with one toolchain.
struct Built {
    /// `go version`'s release, e.g. `go1.19.8`.
    release: String,
    http: PathBuf,
    http_stripped: PathBuf,
    /// `-buildmode=pie -ldflags=-s -w`: ET_DYN, no .symtab.
    http_pie_stripped: PathBuf,
    worker: PathBuf,
    worker_stripped: PathBuf,
}

/// Builds go-http (plain and `-ldflags=-s -w`) and the demo (worker stripped with
/// `strip`, as the demo's build script takes no flags) with `go` into the test's tmp dir.
fn build(tag: &str, go: &Path) -> Built {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-inspect").join(tag);
    std::fs::create_dir_all(&out).unwrap();
    let version = run(Command::new(go).arg("version"));
    let release = version.split_whitespace().nth(2).expect("go version output").to_string();
    let src = repo().join("testapps/go-http");
    let go_build = |dst: &Path, flags: &[&str]| {
        run(Command::new(go)
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(dst)
            .arg("main.go"));
    };
    let http = out.join("go-http");
    let http_stripped = out.join("go-http-stripped");
    go_build(&http, &[]);
    go_build(&http_stripped, &["-ldflags=-s -w"]);
    let http_pie_stripped = out.join("go-http-pie-stripped");
    go_build(&http_pie_stripped, &["-buildmode=pie", "-ldflags=-s -w"]);
    run(Command::new("bash").arg(repo().join("testapps/demo/build.sh")).env("GO", go).env("OUT", out.join("demo")));
    let worker = out.join("demo/worker");
    let worker_stripped = out.join("worker-stripped");
    run(Command::new("strip").arg("-o").arg(&worker_stripped).arg(&worker));
    Built { release, http, http_stripped, http_pie_stripped, worker, worker_stripped }
}

fn go119() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let go = run(Command::new("bash").args(["-c", "command -v go"]));
        assert!(!go.is_empty(), "go not on PATH: install golang-go (scripts/setup.sh)");
        build("go1.19", Path::new(&go))
    })
}

fn go123() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        // Cached under ~/.cache/beyla-rs after the first fetch; fails loudly when unavailable.
        let go = run(Command::new("bash").arg(repo().join("testapps/fetch-go.sh")).arg("1.23"));
        build("go1.23", Path::new(&go))
    })
}

const HTTP_FUNCS: &[&str] = &[
    "net/http.serverHandler.ServeHTTP",
    "net/http.(*conn).readRequest",
    "net/http.(*response).WriteHeader",
    "net/http.(*Transport).roundTrip",
    "net/http.(*persistConn).roundTrip",
    "net/http.(*http2Framer).WriteHeaders",
    "crypto/tls.(*Conn).Read",
    "crypto/tls.(*Conn).Write",
    "runtime.newproc1",
    "runtime.casgstatus",
    "runtime.goexit1",
];

const GRPC_FUNCS: &[&str] = &[
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus",
    "google.golang.org/grpc.(*ClientConn).Invoke",
    "google.golang.org/grpc.(*ClientConn).NewStream",
    "golang.org/x/net/http2.(*Framer).WriteHeaders",
];

/// Functions, file offsets and RET sites checked against the file itself.
fn check_functions(bin: &GoBinary, expected: &[&str]) {
    let data = std::fs::read(&bin.path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    for name in expected {
        let f = bin.function(name).unwrap_or_else(|| panic!("{}: {name} not found", bin.path.display()));
        assert!(f.size > 0, "{name}: size 0");
        // The file offset is where the .text section puts that address.
        let text = file.section_by_name(".text").unwrap();
        let (text_off, _) = text.file_range().unwrap();
        assert!(f.address >= text.address() && f.address + f.size <= text.address() + text.size(), "{name}");
        assert_eq!(f.file_offset, text_off + (f.address - text.address()), "{name}: file offset");
        assert!(!f.returns.is_empty(), "{name}: no RET found");
        for &r in &f.returns {
            assert!(r >= f.file_offset && r < f.file_offset + f.size, "{name}: RET {r:#x} outside the function");
            assert_eq!(data[r as usize], 0xc3, "{name}: byte at file offset {r:#x} is not RET");
        }
        // Entry probes sit past the stack check (`cmp rsp|r12, [r14+0x10]`, REX 0x49/0x4d 3b
        // 66 10, then jbe), on the frame's set-up (`push rbp` or `sub rsp, imm`); a function
        // without the check (runtime.casgstatus is NOSPLIT) is probed at its entry.
        let code = &data[f.file_offset as usize..(f.file_offset + f.size) as usize];
        let check = code.windows(4).take(12).position(|w| matches!(w, [0x49 | 0x4d, 0x3b, 0x66, 0x10]));
        let at = &data[f.probe_offset as usize..];
        if *name == "runtime.casgstatus" {
            assert_eq!((check, f.probe_offset), (None, f.file_offset), "{name}: NOSPLIT, probed at its entry");
        } else {
            assert!(check.is_some(), "{name}: no stack check in its first bytes");
            let skip = f.probe_offset - f.file_offset;
            assert!((6..=24).contains(&skip), "{name}: probed {skip} bytes past the entry");
            assert!(
                at[0] == 0x55 || at[..3] == [0x48, 0x83, 0xec] || at[..3] == [0x48, 0x81, 0xec],
                "{name}: {:x?}",
                &at[..4]
            );
        }
    }
    for f in &bin.functions {
        assert!(PROBED_FUNCTIONS.contains(&f.name));
    }
}

/// `.symtab` and the pclntab agree on every probed function's address.
fn check_symtab_matches_pclntab(path: &Path, format: Format) {
    let data = std::fs::read(path).unwrap();
    let image = beyla::discover::golang::elf::Image::parse(&data).unwrap();
    let symtab = symbols::from_symtab(&image, PROBED_FUNCTIONS);
    let (fmt, funcs) = symbols::from_pclntab(&image).unwrap().expect("pclntab");
    assert_eq!(fmt, format);
    assert!(symtab.len() >= HTTP_FUNCS.len(), "{symtab:?}");
    let pcln = symbols::wanted_from_pclntab(&funcs, PROBED_FUNCTIONS);
    assert_eq!(pcln.len(), symtab.len());
    for (name, &(addr, size)) in &symtab {
        let &(entry, psize) = pcln.get(name).unwrap_or_else(|| panic!("{name} not in pclntab"));
        assert_eq!(entry, addr, "{name}: pclntab entry != symtab address");
        // The pclntab runs to the next function, so it also covers the INT3 padding.
        assert!(psize >= size && psize < size + 64, "{name}: pclntab size {psize} vs symtab {size}");
    }
    // All functions: .symtab text symbols start pclntab functions (ABI wrappers without their
    // `.abi0` suffix). Exceptions: cgo's C code, which has no pclntab entry, and generic
    // instantiations / `type..eq` helpers that the two tables spell differently (about 1%).
    let file = object::File::parse(&*data).unwrap();
    let by_entry: std::collections::HashMap<u64, Vec<&str>> = funcs.iter().fold(Default::default(), |mut m, f| {
        m.entry(f.entry).or_default().push(f.name.as_str());
        m
    });
    let (mut total, mut unmatched) = (0, Vec::new());
    for sym in file.symbols().filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0) {
        total += 1;
        let name = sym.name().unwrap();
        let base = name.strip_suffix(".abi0").unwrap_or(name);
        if !by_entry.get(&sym.address()).is_some_and(|n| n.contains(&base)) {
            unmatched.push(name.to_string());
        }
    }
    println!("{}: {total} symtab functions, {} not in the pclntab", path.display(), unmatched.len());
    assert!(total > 4000 && unmatched.len() * 50 < total, "{unmatched:?}");
}

fn table_row(lib: Lib, version: (u32, u32)) -> &'static [(&'static str, u64)] {
    FALLBACK
        .iter()
        .find(|r| r.lib == lib && r.version == version)
        .unwrap_or_else(|| panic!("no fallback row for {lib:?} {version:?}"))
        .offsets
}

/// Every offset relevant to `lib` came from DWARF and equals the table's row.
fn check_dwarf_equals_table(bin: &GoBinary, lib: Lib, version: (u32, u32)) {
    assert!(bin.has_dwarf);
    let row = table_row(lib, version);
    for f in FIELDS.iter().filter(|f| f.lib == lib) {
        // A type the program does not use is not linked in (the worker has no HTTP client).
        let needed = f.needed_by.iter().any(|p| bin.functions.iter().any(|fun| fun.name.starts_with(p)));
        if !needed && !bin.offset_sources.contains(&(f.name, OffsetSource::Dwarf)) {
            continue;
        }
        let v = bin.offsets.get(f.name).unwrap_or_else(|| panic!("{}: no DWARF offset", f.key()));
        assert!(bin.offset_sources.contains(&(f.name, OffsetSource::Dwarf)), "{}", f.key());
        let t = row.iter().find(|(n, _)| *n == f.name).map(|(_, v)| *v);
        assert_eq!(Some(v), t, "{}: DWARF {v} vs table {t:?} ({})", f.key(), bin.path.display());
    }
}

fn check_go_http(b: &Built, minor: u32, format: Format) {
    // `telemetry.sdk.language` of a Go program, from its section headers.
    assert!(beyla::discover::golang::is_go(&b.http));
    assert_eq!(beyla::attach::sdk_language_of(&b.http), "go");
    let bin = inspect(&b.http).unwrap();
    println!("{} {} -> {:?}", b.release, b.http.display(), bin.support());
    assert_eq!(bin.build.go_version, b.release);
    assert_eq!(bin.build.main_path.as_deref(), Some("command-line-arguments"));
    assert_eq!(bin.build.main_module, None, "GOPATH mode has no main module");
    assert_eq!((bin.version.unwrap().major, bin.version.unwrap().minor), (1, minor));
    assert_eq!(bin.symbol_source, Some(SymbolSource::Symtab));
    assert!(!bin.pie);
    check_functions(&bin, HTTP_FUNCS);
    assert!(bin.function(GRPC_FUNCS[0]).is_none());
    check_symtab_matches_pclntab(&b.http, format);
    check_dwarf_equals_table(&bin, Lib::Std, (1, minor));
    assert_eq!(bin.support(), GoSupport::Full);

    // Stripped: pclntab + the table give the same answers.
    let s = inspect(&b.http_stripped).unwrap();
    println!("{} {} -> {:?}", b.release, b.http_stripped.display(), s.support());
    assert_eq!(s.build.go_version, b.release);
    assert!(!s.has_dwarf);
    assert_eq!(s.symbol_source, Some(SymbolSource::Pclntab(format)));
    check_functions(&s, HTTP_FUNCS);
    for f in &bin.functions {
        let g = s.function(f.name).unwrap();
        assert_eq!((g.address, g.returns.len()), (f.address, f.returns.len()), "{}: stripped vs unstripped", f.name);
    }
    assert_eq!(s.offsets, bin.offsets);
    assert!(s.offset_sources.iter().all(|(_, src)| *src == OffsetSource::Table));
    // Where traceparent is written: found by disassembly, with or without symbols.
    let site = bin.call_site("net/http.(*Request).write", "net/http.Header.writeSubset");
    let write = bin.function("net/http.(*Request).write").unwrap();
    assert!(site.is_some_and(|c| c.file_offset > write.file_offset && c.file_offset < write.file_offset + write.size));
    assert_eq!(s.call_site("net/http.(*Request).write", "net/http.Header.writeSubset"), site);
    assert_eq!(s.support(), GoSupport::Full);

    // Stripped PIE: link-time addresses start near 0, file offsets still from PT_LOAD.
    let p = inspect(&b.http_pie_stripped).unwrap();
    println!("{} {} -> {:?}", b.release, b.http_pie_stripped.display(), p.support());
    assert!(p.pie);
    assert_eq!(p.symbol_source, Some(SymbolSource::Pclntab(format)));
    check_functions(&p, HTTP_FUNCS);
    assert_eq!(p.offsets, bin.offsets);
    assert_eq!(p.support(), GoSupport::Full);
}

fn check_worker(b: &Built, minor: u32) {
    let bin = inspect(&b.worker).unwrap();
    println!("{} {} -> {:?}", b.release, b.worker.display(), bin.support());
    assert_eq!(bin.build.go_version, b.release);
    assert_eq!(bin.build.main_path.as_deref(), Some("beylademo/worker"));
    check_functions(&bin, GRPC_FUNCS);
    check_dwarf_equals_table(&bin, Lib::Std, (1, minor));
    check_dwarf_equals_table(&bin, Lib::Grpc, (1, 33));
    assert_eq!(bin.support(), GoSupport::Full);

    // strip(1): no DWARF, no .symtab, and (GOPATH build) no grpc version in the build info,
    // so the grpc offsets cannot be looked up and are reported missing.
    let s = inspect(&b.worker_stripped).unwrap();
    println!("{} {} -> {:?}", b.release, b.worker_stripped.display(), s.support());
    assert!(matches!(s.symbol_source, Some(SymbolSource::Pclntab(_))));
    check_functions(&s, GRPC_FUNCS);
    assert_eq!(s.build.dep_version("google.golang.org/grpc"), None);
    let missing = vec![
        "google.golang.org/grpc/internal/transport.Stream.method".to_string(),
        "google.golang.org/grpc/internal/transport.Stream.id".to_string(),
        "google.golang.org/grpc/internal/transport.http2Client.conn".to_string(),
        "google.golang.org/grpc/internal/transport.http2Server.conn".to_string(),
        "google.golang.org/grpc/internal/status.Status.s".to_string(),
    ];
    assert_eq!(s.support(), GoSupport::Partial { missing });
}

#[test]
fn gobuild_go119_http_unstripped_and_stripped() {
    let b = go119();
    assert!(b.release.starts_with("go1.19."), "{}", b.release);
    check_go_http(b, 19, Format::Go118);
}

#[test]
fn gobuild_go123_http_unstripped_and_stripped() {
    let b = go123();
    assert!(b.release.starts_with("go1.23."), "{}", b.release);
    check_go_http(b, 23, Format::Go120);
}

#[test]
fn gobuild_go119_grpc_worker() {
    check_worker(go119(), 19);
}

#[test]
fn gobuild_go123_grpc_worker() {
    check_worker(go123(), 23);
}

#[test]
fn non_go_binaries_are_not_go() {
    // This Rust test binary, and the shell (dash on Debian, bash in the Nix sandbox).
    for p in [std::env::current_exe().unwrap(), std::fs::canonicalize("/bin/sh").unwrap()] {
        assert!(p.exists(), "{}", p.display());
        let e = inspect(&p).unwrap_err();
        assert!(e.is_not_go(), "{}: {e}", p.display());
    }
    assert!(!inspect(Path::new("/nonexistent/beyla-test")).unwrap_err().is_not_go());
}

/// Prints the DWARF offsets of each measured binary as fallback rows, and checks the table
/// holds exactly those numbers.
#[test]
fn gobuild_fallback_table_matches_dwarf() {
    let mut measured = Vec::new();
    for b in [go119(), go123()] {
        for (lib, path) in [(Lib::Std, &b.http), (Lib::Grpc, &b.worker)] {
            let bin = inspect(path).unwrap();
            let v = match lib {
                Lib::Std => bin.version.map(|v| (v.major, v.minor)).unwrap(),
                Lib::Grpc => (1, 33),
                Lib::XNet => unreachable!("x/net has no table rows"),
            };
            println!("    // {lib:?} {v:?}: {} ({})", path.display(), b.release);
            for f in FIELDS.iter().filter(|f| f.lib == lib) {
                println!(
                    "        (\"{}\", {}),",
                    f.name,
                    bin.offsets.get(f.name).map_or("?".into(), |o| o.to_string())
                );
            }
            measured.push((bin, lib, v));
        }
    }
    for (bin, lib, v) in measured {
        check_dwarf_equals_table(&bin, lib, v);
    }
}
