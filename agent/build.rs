//! Compiles each BPF hook family (`bpf/<family>.bpf.c`) into a libbpf skeleton in `OUT_DIR`.
//! The BTF header is the committed `bpf/include/vmlinux/<arch>/vmlinux.h`, never the running
//! kernel's, so the build works without `/sys` (Nix sandbox). `BPF_CLANG` picks the compiler.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

const FAMILIES: &[&str] =
    &["process", "socket_net", "tracepoint_net", "kprobe_net", "fentry_net", "go", "openssl", "rustls"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf = manifest.join("../bpf");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "arm64",
        _ => "x86",
    };
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into());
    let include = bpf.join("include");
    let vmlinux = include.join("vmlinux").join(arch);

    for family in FAMILIES {
        let src = bpf.join(format!("{family}.bpf.c"));
        SkeletonBuilder::new()
            .source(&src)
            .clang(&clang)
            .clang_args([
                "-I".into(),
                include.clone().into_os_string(),
                "-isystem".into(),
                vmlinux.clone().into_os_string(),
                "-Wall".into(),
                "-Wpadded".into(),
                "-Werror".into(),
            ])
            .build_and_generate(out.join(format!("{family}.skel.rs")))
            .unwrap_or_else(|e| panic!("building BPF family {family} from {}: {e:#}", src.display()));
    }
    println!("cargo:rerun-if-changed={}", bpf.display());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
}
