//! The TLS libraries of a process: which of its mapped files define OpenSSL's `SSL_read` and
//! `SSL_write` (a shared libssl 1.1 or 3.x, or a copy linked into the executable, as in Node's
//! official binaries), or rustls's plaintext reader and writer (a Rust executable), and where,
//! for the TLS probes (`attach::TlsProbes`).
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};

use super::golang::elf::{file_offset, Image};

/// File offsets of the libssl functions the probes use (what `attach_uprobe` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslFunctions {
    pub read: u64,
    pub write: u64,
    /// `SSL_read_ex`, `SSL_write_ex`: OpenSSL 1.1.1+ (Python uses them).
    pub read_ex: Option<u64>,
    pub write_ex: Option<u64>,
    /// `SSL_free`: forgets an SSL object's socket, whose address the next connection may reuse.
    pub free: Option<u64>,
    /// `SSL_do_handshake`: names the socket before the first request.
    pub handshake: Option<u64>,
}

/// File offsets of the rustls (0.23) functions `bpf/rustls.bpf.c` uses, found by their
/// demangled names in the symbol table of a Rust executable (not in a stripped one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustlsFunctions {
    /// `<rustls::conn::connection::Reader as std::io::Read>::read`: plaintext out (blocking
    /// API; inlined into tokio-rustls's read).
    pub reader_read: Option<u64>,
    /// `<tokio_rustls::{server,client}::TlsStream<IO> as AsyncRead>::poll_read`, each copy
    /// (one per IO type): plaintext out, async.
    pub poll_reads: Vec<u64>,
    /// `<rustls::conn::ConnectionCommon<T> as PlaintextSink>::write_vectored`, each copy (one
    /// per side): where a vectored write's slices are read from (without it, vectored writes
    /// are not read).
    pub write_vectoreds: Vec<u64>,
    /// `rustls::common_state::CommonState::buffer_plaintext`: plaintext in (`Writer::write`
    /// calls it; the Writer itself is inlined by LTO).
    pub buffer_plaintext: u64,
    /// `rustls::msgs::deframer::buffers::DeframerVecBuffer::read`: records in from the socket.
    pub deframer_read: u64,
}

/// What one file defines: libssl's functions, libcrypto's `BIO_write` (through which an SSL
/// with a memory BIO hands over its records; in libcrypto, or in the executable with the rest
/// of a static OpenSSL), and rustls's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileFunctions {
    pub ssl: Option<SslFunctions>,
    pub bio_write: Option<u64>,
    pub rustls: Option<RustlsFunctions>,
}

const RUSTLS_READER_READ: &str = "<rustls::conn::connection::Reader as std::io::Read>::read";
const RUSTLS_BUFFER_PLAINTEXT: &str = "rustls::common_state::CommonState::buffer_plaintext";
const RUSTLS_DEFRAMER_READ: &str = "rustls::msgs::deframer::buffers::DeframerVecBuffer::read";
const RUSTLS_WRITE_VECTORED: &str =
    "<rustls::conn::ConnectionCommon<T> as rustls::conn::connection::PlaintextSink>::write_vectored";
const TOKIO_RUSTLS_POLL_READS: [&str; 2] = [
    "<tokio_rustls::server::TlsStream<IO> as tokio::io::async_read::AsyncRead>::poll_read",
    "<tokio_rustls::client::TlsStream<IO> as tokio::io::async_read::AsyncRead>::poll_read",
];

/// A file mapped by a process that may hold OpenSSL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path as the process sees it (for logs and `beyla doctor`).
    pub shown: String,
    /// The same file as the agent opens it (through `/proc/<pid>/root`, for containers).
    pub path: PathBuf,
}

/// Files of `pid` worth a look: the mapped `libssl*` and `libcrypto*` libraries and the
/// executable.
pub fn candidates(pid: u32) -> std::io::Result<Vec<Candidate>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    Ok(candidates_in(pid, &maps, exe.as_deref()))
}

fn candidates_in(pid: u32, maps: &str, exe: Option<&Path>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut add = |shown: &str| {
        if out.iter().all(|c| c.shown != shown) {
            out.push(Candidate { shown: shown.to_string(), path: root.join(shown.trim_start_matches('/')) });
        }
    };
    for line in maps.lines() {
        // address perms offset dev inode path; only executable mappings of files hold code.
        let mut fields = line.split_whitespace();
        let perms = fields.nth(1).unwrap_or("");
        let Some(path) = fields.nth(3) else { continue };
        if !perms.contains('x') || !path.starts_with('/') || line.ends_with(" (deleted)") {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let is_exe = exe.is_some_and(|e| e == Path::new(path));
        if name.starts_with("libssl.so") || name.starts_with("libcrypto.so") || is_exe {
            add(path);
        }
    }
    out
}

/// Where `data` (an ELF file) defines the OpenSSL functions: libssl's only if it defines both
/// `SSL_read` and `SSL_write` (an executable that imports them from libssl does not).
pub fn file_functions(data: &[u8]) -> FileFunctions {
    let Some(img) = Image::parse(data) else { return FileFunctions::default() };
    let find = |name: &str| {
        let defined = |s: &object::read::elf::ElfSymbol64<'_, '_, object::Endianness>| {
            s.is_definition() && s.name() == Ok(name) && s.address() != 0
        };
        let sym = img.file.dynamic_symbols().find(defined).or_else(|| img.file.symbols().find(defined))?;
        file_offset(&img.segments, sym.address())
    };
    let ssl = find("SSL_read").zip(find("SSL_write")).map(|(read, write)| SslFunctions {
        read,
        write,
        read_ex: find("SSL_read_ex"),
        write_ex: find("SSL_write_ex"),
        free: find("SSL_free"),
        handshake: find("SSL_do_handshake"),
    });
    FileFunctions { ssl, bio_write: find("BIO_write"), rustls: rustls_functions(&img) }
}

/// rustls's functions in `img`'s symbol table, if it has what the probes need: the write
/// (`buffer_plaintext`), the records' read (`DeframerVecBuffer::read`) and a plaintext read
/// (the blocking `Reader::read` or tokio-rustls's `poll_read`), each of the first three once.
/// Inlined functions leave no symbol, and a build that inlined one cannot be read; a function
/// found at two addresses (generic code instantiated twice) would be half probed: none then.
fn rustls_functions(img: &Image<'_>) -> Option<RustlsFunctions> {
    let once = [RUSTLS_READER_READ, RUSTLS_BUFFER_PLAINTEXT, RUSTLS_DEFRAMER_READ];
    let mut found: [Vec<u64>; 3] = Default::default();
    let (mut poll_reads, mut write_vectoreds) = (Vec::new(), Vec::new());
    for sym in img.file.symbols() {
        // Demangling every symbol of a large executable is slow: rustls's contain its name.
        let Ok(name) = sym.name() else { continue };
        if !sym.is_definition() || sym.address() == 0 || !name.contains("rustls") {
            continue;
        }
        let name = format!("{:#}", rustc_demangle::demangle(name));
        let list = match once.iter().position(|f| *f == name) {
            Some(slot) => &mut found[slot],
            None if TOKIO_RUSTLS_POLL_READS.contains(&name.as_str()) => &mut poll_reads,
            None if name == RUSTLS_WRITE_VECTORED => &mut write_vectoreds,
            None => continue,
        };
        if !list.contains(&sym.address()) {
            list.push(sym.address());
        }
    }
    let one = |v: &[u64]| match v {
        [address] => file_offset(&img.segments, *address),
        _ => None,
    };
    let offsets = |v: Vec<u64>| v.iter().filter_map(|a| file_offset(&img.segments, *a)).collect::<Vec<u64>>();
    let (poll_reads, write_vectoreds) = (offsets(poll_reads), offsets(write_vectoreds));
    let reader_read = one(&found[0]);
    if reader_read.is_none() && (poll_reads.is_empty() || found[0].len() > 1) {
        return None;
    }
    Some(RustlsFunctions {
        reader_read,
        poll_reads,
        write_vectoreds,
        buffer_plaintext: one(&found[1])?,
        deframer_read: one(&found[2])?,
    })
}

/// [`file_functions`] of the file at `path`, mapped rather than read (an executable with
/// OpenSSL inside, such as Node's, is ~100 MB).
pub fn inspect(path: &Path) -> std::io::Result<FileFunctions> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only mapping of a file the agent does not write; a program's files do not
    // change while it runs them.
    let data = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(file_functions(&data))
}

/// The `beyla doctor` section: for each process the configuration selects (pid, service),
/// the files that may hold OpenSSL and whether the OpenSSL probes would attach there.
pub fn doctor_report(procs: &[(u32, String)]) -> String {
    let mut rows = vec![["PID".to_string(), "SERVICE".into(), "TLS LIBRARY".into(), "TLS PROBES".into()]];
    for (pid, service) in procs {
        let candidates = candidates(*pid).unwrap_or_default();
        let mut any = false;
        for c in candidates {
            let name = c.shown.rsplit('/').next().unwrap_or_default();
            let probed = match inspect(&c.path) {
                Ok(FileFunctions { rustls: Some(f), .. }) => {
                    any = true;
                    let reads = match (f.reader_read, f.poll_reads.len()) {
                        (Some(_), 0) => "Reader::read".to_string(),
                        (None, n) => format!("tokio-rustls poll_read x{n}"),
                        (Some(_), n) => format!("Reader::read, tokio-rustls poll_read x{n}"),
                    };
                    format!("yes (rustls: {reads}, buffer_plaintext, DeframerVecBuffer::read)")
                }
                Ok(FileFunctions { ssl: Some(f), bio_write, .. }) => {
                    any = true;
                    let ex = if f.read_ex.is_some() && f.write_ex.is_some() { ", _ex forms" } else { "" };
                    let bio = if bio_write.is_some() { ", BIO_write" } else { "" };
                    format!("yes (SSL_read, SSL_write{ex}{bio})")
                }
                Ok(FileFunctions { ssl: None, bio_write: Some(_), .. }) => "yes (BIO_write: memory BIOs)".into(),
                Ok(_) if name.starts_with("libssl") => "no: SSL_read/SSL_write not found".into(),
                Ok(_) => continue, // an executable or libcrypto without what the probes use
                Err(e) => format!("no: {e}"),
            };
            rows.push([pid.to_string(), service.clone(), c.shown, probed]);
        }
        if !any {
            rows.push([
                pid.to_string(),
                service.clone(),
                "-".into(),
                "no OpenSSL or rustls found (yet): TLS stays opaque".into(),
            ]);
        }
    }
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!("{:w0$}  {:w1$}  {:w2$}  {}\n", r[0], r[1], r[2], r[3]));
    }
    out.push_str(
        "(Go's crypto/tls has its own probes; Java's JSSE is not read, nor rustls where the plaintext read is \
         inlined (tokio-rustls) or the executable stripped. Plaintext whose socket the agent cannot name is \
         counted in beyla_tls_unlinked_transfers_total, not decoded.)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_executable_libssl_mappings_and_the_executable() {
        let maps = "\
55d0c0000000-55d0c0010000 r--p 00000000 08:01 100 /usr/sbin/nginx
55d0c0010000-55d0c0100000 r-xp 00010000 08:01 100 /usr/sbin/nginx
7f0000000000-7f0000020000 r--p 00000000 08:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000020000-7f0000090000 r-xp 00020000 08:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000100000-7f0000300000 r-xp 00040000 08:01 300 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000400000-7f0000410000 r-xp 00000000 08:01 400 /tmp/libssl.so.1.1 (deleted)
7f0000500000-7f0000510000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let got = candidates_in(42, maps, Some(Path::new("/usr/sbin/nginx")));
        let shown: Vec<&str> = got.iter().map(|c| c.shown.as_str()).collect();
        let want =
            ["/usr/sbin/nginx", "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"];
        assert_eq!(shown, want);
        assert_eq!(got[1].path, Path::new("/proc/42/root/usr/lib/x86_64-linux-gnu/libssl.so.3"));
    }

    fn lib(name: &str) -> PathBuf {
        ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name} missing: run scripts/setup.sh"))
    }

    /// The machine's own libssl and libcrypto (installed with nginx, Python and curl by
    /// scripts/setup.sh) define what the probes use; an executable that imports them (nginx)
    /// defines none.
    #[test]
    fn libssl_defines_the_functions_and_an_importer_does_not() {
        let ssl = inspect(&lib("libssl.so.3")).unwrap();
        let f = ssl.ssl.expect("SSL_read/SSL_write in libssl");
        assert!(f.read_ex.is_some() && f.write_ex.is_some() && f.free.is_some() && f.handshake.is_some(), "{f:?}");
        assert_ne!(f.read, f.write);
        assert_eq!(ssl.bio_write, None, "BIO_write is libcrypto's");
        let crypto = inspect(&lib("libcrypto.so.3")).unwrap();
        assert!(crypto.ssl.is_none() && crypto.bio_write.is_some(), "{crypto:?}");
        let importer = ["/usr/sbin/nginx", "/usr/bin/curl"].iter().map(Path::new).find(|p| p.exists());
        let importer = importer.expect("nginx or curl missing: run scripts/setup.sh");
        assert_eq!(inspect(importer).unwrap(), FileFunctions::default());
        assert_eq!(file_functions(b"not an ELF file"), FileFunctions::default());
    }
}
