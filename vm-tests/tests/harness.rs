//! Harness tests. `vm_*` boot a real Debian 6.1 kernel under QEMU (they download it into the
//! cache on first use and need qemu-system-x86 and busybox-static); the rest are plain unit
//! tests of kernels.toml parsing, apt sources reading, module resolution and the init.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use vm_tests::fetch::{mirrors_from_sources, sources_list};
use vm_tests::initramfs::{self, shell_quote, CgroupLayout, Cpio, GuestCommand};
use vm_tests::kernels::{KernelsFile, Mirrors};
use vm_tests::modules::{self, parse_builtin, ModulesDep};
use vm_tests::qemu::{parse_marker, Marker};
use vm_tests::rootfs::{fnv1a, RootfsSpec, HOST_MOUNT};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

#[test]
fn kernels_toml_of_the_repo_has_the_matrix() {
    let k = KernelsFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels.toml")).unwrap();
    let k510 = k.get("5.10").unwrap();
    assert!(k510.package.starts_with("linux-image-5.10.0-") && k510.package.ends_with("-amd64-unsigned"));
    assert!(k510.suite.starts_with("bullseye"));
    let k61 = k.get("6.1").unwrap();
    assert!(k61.package.starts_with("linux-image-6.1.0-") && k61.package.ends_with("-amd64-unsigned"));
    assert!(k61.suite.starts_with("bookworm"));
    let k612 = k.get("6.12").unwrap();
    assert!(k612.package.starts_with("linux-image-6.12.") && k612.package.ends_with("+deb12-amd64-unsigned"));
    assert_eq!(k612.suite, "bookworm-security");
    assert!(k612.is_security());
}

#[test]
fn kernels_toml_parses_entries_and_file_names() {
    let text = r#"
        [kernel."6.1"]
        package = "linux-image-6.1.0-56-amd64-unsigned"
        version = "6.1.192-2"
        suite = "bookworm-security"

        [kernel."x"]
        package = "linux-image-x-amd64-unsigned"
        version = "1:2.3-4"
        suite = "bookworm"
    "#;
    let k = KernelsFile::parse(text).unwrap();
    assert_eq!(k.mirrors, Mirrors::default());
    let k61 = k.get("6.1").unwrap();
    assert_eq!(k61.deb_file_name(), "linux-image-6.1.0-56-amd64-unsigned_6.1.192-2_amd64.deb");
    assert_eq!(k.get("x").unwrap().deb_file_name(), "linux-image-x-amd64-unsigned_1%3a2.3-4_amd64.deb");
    assert!(!k.get("x").unwrap().is_security());
    assert_eq!(k.suites().into_iter().collect::<Vec<_>>(), vec!["bookworm", "bookworm-security"]);
    let err = format!("{:#}", k.get("4.19").unwrap_err());
    assert!(err.contains("unknown kernel \"4.19\"") && err.contains("6.1, x"), "{err}");
}

#[test]
fn kernels_toml_rejects_unknown_keys_and_bad_values() {
    let unknown = "[kernel.\"6.1\"]\npackage = \"linux-image-a\"\nversion = \"1\"\nsuite = \"s\"\nflavour = \"rt\"\n";
    let err = format!("{:#}", KernelsFile::parse(unknown).unwrap_err());
    assert!(err.contains("flavour"), "{err}");
    let missing = "[kernel.\"6.1\"]\npackage = \"linux-image-a\"\nsuite = \"s\"\n";
    let err = format!("{:#}", KernelsFile::parse(missing).unwrap_err());
    assert!(err.contains("version"), "{err}");
    let not_image = "[kernel.\"6.1\"]\npackage = \"linux-headers-a\"\nversion = \"1\"\nsuite = \"s\"\n";
    let err = format!("{:#}", KernelsFile::parse(not_image).unwrap_err());
    assert!(err.contains("kernel.\"6.1\".package"), "{err}");
    let space = "[kernel.\"6.1\"]\npackage = \"linux-image-a\"\nversion = \"1 2\"\nsuite = \"s\"\n";
    let err = format!("{:#}", KernelsFile::parse(space).unwrap_err());
    assert!(err.contains("kernel.\"6.1\".version"), "{err}");
}

#[test]
fn mirrors_come_from_the_system_sources() {
    let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian/\n\
                  Suites: bookworm bookworm-updates\nComponents: main\n\n\
                  Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
    let other = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n";
    let files = vec![
        ("nodesource.sources".to_string(), other.to_string()),
        ("debian.sources".to_string(), deb822.to_string()),
        ("x.list.disabled".to_string(), "deb http://wrong/debian bookworm main\n".to_string()),
    ];
    let m = mirrors_from_sources(&files, &Mirrors::default());
    assert_eq!(m.debian, "http://mirror.example/debian");
    assert_eq!(m.security, "http://mirror.example/debian-security");

    let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://l.example/debian bullseye main\n\
                deb-src http://src.example/debian bullseye main\n";
    let m = mirrors_from_sources(&[("sources.list".into(), list.into())], &Mirrors::default());
    assert_eq!(m.debian, "http://l.example/debian");
    assert_eq!(m.security, Mirrors::default().security, "no security source: the fallback");

    let kernels = KernelsFile::parse(
        "[kernel.a]\npackage = \"linux-image-a\"\nversion = \"1\"\nsuite = \"bullseye-security\"\n\
         [kernel.b]\npackage = \"linux-image-b\"\nversion = \"1\"\nsuite = \"bookworm\"\n",
    )
    .unwrap();
    let text = sources_list(&kernels, &m);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("deb ")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(text.contains("http://l.example/debian bullseye main"), "{text}");
    assert!(text.contains(&format!("{} bullseye-security main", Mirrors::default().security)), "{text}");
    assert!(text.contains("http://l.example/debian bookworm main"), "{text}");
    assert!(text.contains("[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"), "{text}");
}

#[test]
fn module_dependencies_resolve_from_modules_dep() {
    let dep = ModulesDep::parse(&fixture("modules.dep")).unwrap();
    let builtin = parse_builtin(&fixture("modules.builtin"));
    assert!(builtin.contains("virtio_pci") && builtin.contains("ext4"));
    let order = dep.resolve(modules::REQUIRED, &builtin).unwrap();
    assert_eq!(
        order,
        vec![
            "kernel/net/9p/9pnet.ko.xz",
            "kernel/net/9p/9pnet_virtio.ko.xz",
            "kernel/fs/netfs/netfs.ko.xz",
            "kernel/fs/9p/9p.ko.xz",
            "kernel/fs/overlayfs/overlay.ko.xz",
            "kernel/net/sched/sch_ingress.ko.xz",
            "kernel/net/sched/cls_bpf.ko.xz",
        ]
    );
    // Dependencies come first, each module once; `-` and `_` are the same name.
    let order = dep.resolve(&["virtio-net", "net_failover", "virtio_rng"], &builtin).unwrap();
    assert_eq!(
        order,
        vec![
            "kernel/net/core/failover.ko.xz",
            "kernel/drivers/net/net_failover.ko.xz",
            "kernel/drivers/net/virtio_net.ko.xz",
            "kernel/drivers/char/hw_random/virtio-rng.ko.xz",
        ]
    );
    assert_eq!(modules::module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz"), "virtio_rng");
}

#[test]
fn module_resolution_errors_name_the_module() {
    let dep = ModulesDep::parse(&fixture("modules.dep")).unwrap();
    let err = format!("{:#}", dep.resolve(&["nosuch"], &BTreeSet::new()).unwrap_err());
    assert!(err.contains("module nosuch"), "{err}");
    // Without modules.builtin, the built-in virtio modules are missing.
    let err = format!("{:#}", dep.resolve(modules::REQUIRED, &BTreeSet::new()).unwrap_err());
    assert!(err.contains("module virtio "), "{err}");
    let broken = ModulesDep::parse("a.ko: b.ko\n").unwrap();
    let err = format!("{:#}", broken.resolve(&["a"], &BTreeSet::new()).unwrap_err());
    assert!(err.contains("a.ko depends on b.ko"), "{err}");
    let cycle = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
    let err = format!("{:#}", cycle.resolve(&["a"], &BTreeSet::new()).unwrap_err());
    assert!(err.contains("cycle"), "{err}");
    assert!(ModulesDep::parse("no colon here\n").is_err());
}

/// A minimal ELF64 relocatable object with a `.modinfo` section.
fn fake_module(modinfo: &[u8]) -> Vec<u8> {
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
    let modinfo_off = elf.len();
    elf.extend_from_slice(modinfo);
    let strtab_off = elf.len();
    elf.extend_from_slice(shstrtab);
    while !elf.len().is_multiple_of(8) {
        elf.push(0);
    }
    let shoff = elf.len();
    let mut sh = |name: u32, off: usize, size: usize| {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(&name.to_le_bytes());
        h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        elf.extend_from_slice(&h);
    };
    sh(0, 0, 0);
    sh(1, modinfo_off, modinfo.len());
    sh(10, strtab_off, shstrtab.len());
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    elf
}

#[test]
fn modinfo_depends_reads_the_elf_section() {
    let ko = fake_module(b"license=GPL\0depends=9pnet,netfs\0intree=Y\0name=9p\0");
    assert_eq!(modules::modinfo_depends(&ko).unwrap(), vec!["9pnet", "netfs"]);
    let ko = fake_module(b"license=GPL\0depends=\0name=9pnet\0");
    assert!(modules::modinfo_depends(&ko).unwrap().is_empty());
    assert!(modules::modinfo_depends(b"not an elf").is_err());
}

#[test]
fn init_scripts_quote_the_command_and_environment() {
    assert_eq!(shell_quote("plain/path-1.2"), "plain/path-1.2");
    assert_eq!(shell_quote("exit 3"), "'exit 3'");
    assert_eq!(shell_quote("it's"), "'it'\\''s'");
    assert_eq!(shell_quote(""), "''");
    let mut env = initramfs::base_env();
    env.push(("BEYLA_EBPF_HOOK_MODE".into(), "tracepoints".into()));
    env.push(("X".into(), "a b".into()));
    let cmd = GuestCommand {
        cwd: "/work/my dir".into(),
        env,
        argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
        cgroup: CgroupLayout::Hybrid,
    };
    let s2 = initramfs::stage2(&cmd).unwrap();
    assert!(s2.contains("cd '/work/my dir' ||"), "{s2}");
    assert!(s2.contains("env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root"), "{s2}");
    assert!(s2.contains("BEYLA_EBPF_HOOK_MODE=tracepoints 'X=a b' sh -c 'exit 3' </dev/null"), "{s2}");
    assert!(s2.contains("if [ \"hybrid\" = hybrid ]; then"), "{s2}");
    for p in ["@CWD@", "@ENV@", "@COMMAND@", "@CGROUP@"] {
        assert!(!s2.contains(p), "unfilled {p} in stage 2:\n{s2}");
    }
    let s1 = initramfs::stage1(&["9pnet".into(), "9p".into()]);
    assert!(s1.contains("for m in 9pnet 9p; do"), "{s1}");
    for p in ["@MODULES@", "@NINEP_CACHE@"] {
        assert!(!s1.contains(p), "unfilled {p} in stage 1:\n{s1}");
    }
    let empty = GuestCommand { cwd: "/".into(), env: vec![], argv: vec![], cgroup: CgroupLayout::Unified };
    assert!(initramfs::stage2(&empty).is_err());
}

#[test]
fn systemd_init_fills_every_placeholder() {
    let mut env = initramfs::base_env();
    env.push(("X".into(), "a b".into()));
    let cmd = GuestCommand {
        cwd: "/work/my dir".into(),
        env,
        argv: vec!["bash".into(), "/host/work/t.sh".into()],
        cgroup: CgroupLayout::Unified,
    };
    let c = initramfs::systemd_command(&cmd).unwrap();
    // The host's working directory is reached under the host mount.
    assert!(c.contains(&format!("cd '{HOST_MOUNT}/work/my dir' ||")), "{c}");
    assert!(c.contains("'X=a b' bash /host/work/t.sh </dev/null"), "{c}");
    assert!(c.contains("VM-TESTS-EXIT-CODE=$rc") && c.contains("VM-TESTS-COMMAND-START"), "{c}");
    let root = GuestCommand { cwd: "/".into(), ..cmd.clone() };
    assert!(initramfs::systemd_command(&root).unwrap().contains(&format!("cd {HOST_MOUNT} ||")));
    let s1 = initramfs::systemd_stage1(&["virtio_blk".into(), "ext4".into()]);
    assert!(s1.contains("for m in virtio_blk ext4; do"), "{s1}");
    assert!(s1.contains(&format!("hostroot /newroot{HOST_MOUNT}")), "{s1}");
    assert!(s1.contains("exec switch_root /newroot /lib/systemd/systemd"), "{s1}");
    for text in [&c, &s1] {
        for p in ["@CWD@", "@ENV@", "@COMMAND@", "@HOST_MOUNT@", "@MODULES@", "@NINEP_CACHE@"] {
            assert!(!text.contains(p), "unfilled {p}:\n{text}");
        }
    }
    let empty = GuestCommand { argv: vec![], ..cmd };
    assert!(initramfs::systemd_command(&empty).is_err());
}

#[test]
fn rootfs_key_follows_the_package_set() {
    // FNV-1a 64 test vectors: the key must not change with the Rust version.
    assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
    assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    let base = RootfsSpec::default();
    assert!(base.packages.iter().any(|p| p == "systemd-sysv"), "{base:?}");
    let key = base.key();
    assert!(key.starts_with("debian-bookworm-minbase-") && key.len() == "debian-bookworm-minbase-".len() + 16, "{key}");
    // Order and duplicates don't matter; another package does.
    let mut shuffled = base.clone();
    shuffled.packages.reverse();
    shuffled.packages.push("curl".into());
    assert_eq!(shuffled.key(), key);
    let mut more = base.clone();
    more.packages.push("strace".into());
    assert_ne!(more.key(), key);
    let mut bad = base.clone();
    bad.packages.push("curl; rm -rf /".into());
    assert!(bad.validate().is_err());
    assert!(base.validate().is_ok());
}

#[test]
fn console_markers_are_recognised() {
    assert_eq!(parse_marker("VM-TESTS-EXIT-CODE=3"), Some(Marker::Exit(3)));
    assert_eq!(parse_marker("  VM-TESTS-EXIT-CODE=0  "), Some(Marker::Exit(0)));
    assert_eq!(parse_marker("\x1b[2JVM-TESTS-COMMAND-START release=6.1.0-56-amd64"), Some(Marker::Start));
    assert_eq!(parse_marker("VM-TESTS-INIT-FAILED: mounting bpffs"), Some(Marker::InitFailed("mounting bpffs".into())));
    assert_eq!(parse_marker("VM-TESTS-EXIT-CODE=x"), None);
    assert_eq!(parse_marker("[    3.1] reboot: Power down"), None);
}

#[test]
fn cpio_is_newc_with_a_trailer() {
    let mut c = Cpio::default();
    c.dir("bin");
    c.file("init", 0o755, b"#!/bin/sh\n");
    c.char_dev("dev/console", 0o600, 5, 1);
    c.symlink("etc/link", "/target");
    let out = c.finish();
    assert_eq!(&out[..6], b"070701");
    assert_eq!(out.len() % 512, 0);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("init\0") && text.contains("#!/bin/sh\n") && text.contains("TRAILER!!!\0"));
    // The file entry: mode 0100755, size 10, name "init" (5 with NUL).
    let i = text.find("init\0").unwrap() - 110;
    assert_eq!(&text[i + 14..i + 22], "000081ed");
    assert_eq!(&text[i + 54..i + 62], "0000000a");
    assert_eq!(&text[i + 94..i + 102], "00000005");
    // The console: char device 5:1.
    let j = text.find("dev/console\0").unwrap() - 110;
    assert_eq!(&text[j + 14..j + 22], "00002180");
    assert_eq!(&text[j + 78..j + 86], "00000005");
    assert_eq!(&text[j + 86..j + 94], "00000001");
    // The symlink: mode 0120777, its target as the data.
    let k = text.find("etc/link\0").unwrap() - 110;
    assert_eq!(&text[k + 14..k + 22], "0000a1ff");
    assert_eq!(&text[k + 54..k + 62], "00000007");
    assert!(text[k..].contains("/target"));
}

/// Runs the harness binary; returns (exit code, stdout, stderr, seconds).
fn vm(args: &[&str]) -> (i32, String, String, f64) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vm-tests")).args(args).output().expect("running vm-tests");
    let secs = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("vm-tests {args:?}: {secs:.1} s\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr, secs)
}

#[test]
fn vm_exit_code_is_passed_through() {
    let (code, stdout, stderr, _) = vm(&["--kernel", "6.1", "--", "sh", "-c", "echo hello-from-guest; exit 3"]);
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("[guest] hello-from-guest"), "{stdout}");
    assert!(stderr.contains("release=6.1.0-") && stderr.contains("result=3"), "{stderr}");
    assert!(stderr.contains("accel=tcg") || stderr.contains("accel=kvm"), "{stderr}");
}

#[test]
fn vm_guest_has_the_agent_environment() {
    let script = r#"
        set -e
        uname -r
        test "$(id -u)" = 0
        test -e /sys/kernel/btf/vmlinux
        grep -q ' /sys/fs/bpf bpf ' /proc/mounts
        grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts
        grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts
        test $(( $(cat /sys/class/net/lo/flags) & 1 )) = 1
        test "$(ulimit -l)" = unlimited
        test "$PATH" = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        test "$HOME" = /root
        test "$VM_TESTS_PROBE" = "a b"
        test "$(pwd)" = "$EXPECT_CWD"
        test -f Cargo.toml
        echo written > /tmp/x && test "$(cat /tmp/x)" = written
        touch /etc/vm-tests-overlay-write
        echo guest-environment-ok
    "#;
    let cwd = env!("CARGO_MANIFEST_DIR");
    let expect = format!("EXPECT_CWD={cwd}");
    let (code, stdout, stderr, _) = vm(&[
        "--kernel",
        "6.1",
        "--cwd",
        cwd,
        "--env",
        "VM_TESTS_PROBE=a b",
        "--env",
        &expect,
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("[guest] guest-environment-ok"), "{stdout}");
    assert!(!Path::new("/etc/vm-tests-overlay-write").exists(), "the guest wrote through to the host");
}

#[test]
fn vm_hanging_command_times_out() {
    let (code, stdout, stderr, secs) =
        vm(&["--kernel", "6.1", "--timeout", "60", "--", "sh", "-c", "echo sleeping; sleep 1000"]);
    assert_eq!(code, 124, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("timeout after 60 s"), "{stderr}");
    assert!(stderr.contains("  | sleeping"), "the console tail is printed: {stderr}");
    assert!(stderr.contains("result=timeout"), "{stderr}");
    assert!((60.0..120.0).contains(&secs), "took {secs:.1} s");
}

#[test]
fn vm_systemd_guest_runs_the_command_as_a_service() {
    // The cached Debian image (built with debootstrap on first use) with systemd as PID 1.
    let script = r#"
        set -e
        test "$(cat /proc/1/comm)" = systemd
        test "$VM_TESTS_HOST_ROOT" = /host
        test "$(pwd)" = "/host$EXPECT_CWD"
        test -e /host/etc/debian_version
        grep -q ' /sys/fs/bpf bpf ' /proc/mounts
        grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts
        systemctl is-active --quiet multi-user.target
        echo unit=$(systemctl show -P Id "$(cat /proc/self/cgroup | sed 's|.*/||')")
        touch /written-in-the-snapshot
        exit 4
    "#;
    let cwd = env!("CARGO_MANIFEST_DIR");
    let (code, stdout, stderr, _) = vm(&[
        "--systemd",
        "--kernel",
        "6.1",
        "--timeout",
        "300",
        "--cwd",
        cwd,
        "--env",
        &format!("EXPECT_CWD={cwd}"),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 4, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("unit=vm-tests-command.service"), "{stdout}");
    assert!(stderr.contains("init=systemd") && stderr.contains("result=4"), "{stderr}");
}
