//! The parsers of what other processes control in `/proc`: `discover::proc`'s `parse_stat`
//! (the process names its own `comm`), `parse_cmdline`, `parse_environ` (with
//! `OTEL_RESOURCE_ATTRIBUTES`), `parse_resource_attributes`, `parse_net_tcp_listen`,
//! `parse_socket_link`, `parse_ns_link`, `clean_exe`, and `kube::cgroup`'s `parse` and
//! `parse_path` (container runtimes and kubelet name the cgroups; a process may create its
//! own under a delegated subtree).
//!
//! The first byte selects the parser (`% 10`, in that order); the rest is the file or link
//! target, as bytes where the agent reads bytes and else read lossily as UTF-8, as
//! `read_to_string` and `to_str` leave only valid text. Any outcome but a panic is fine; what
//! is returned must hold what the parsers promise.
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use beyla::discover::proc::{
    clean_exe, parse_cmdline, parse_environ, parse_net_tcp_listen, parse_ns_link, parse_resource_attributes,
    parse_socket_link, parse_stat,
};
use beyla::kube::cgroup;
use beyla::kube::ContainerRef;

fn check_container(c: &ContainerRef) {
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    assert!(c.container_id.len() == 64 && lower_hex(&c.container_id), "{c:?}");
    if let Some(uid) = &c.pod_uid {
        assert!(uid.len() == 36 && lower_hex(&uid.replace('-', "")), "{c:?}");
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, raw)) = data.split_first() else { return };
        let text = String::from_utf8_lossy(raw);
        match mode % 10 {
            0 => {
                if let Some(s) = parse_stat(&text) {
                    assert!(text.contains(&format!("({})", s.comm)));
                }
            }
            1 => {
                let args = parse_cmdline(raw);
                assert!(args.len() <= raw.len());
            }
            2 => {
                let env = parse_environ(raw);
                assert!(env.service_name.as_ref().map_or(true, |s| !s.is_empty()));
                assert!(env.service_namespace.as_ref().map_or(true, |s| !s.is_empty()));
            }
            3 => {
                for (k, _) in parse_resource_attributes(&text) {
                    assert!(!k.is_empty() && k.trim() == k);
                }
            }
            4 => {
                for (inode, _) in parse_net_tcp_listen(&text) {
                    assert_ne!(inode, 0);
                }
            }
            5 => drop(parse_socket_link(&text)),
            6 => drop(parse_ns_link(&text)),
            7 => {
                let exe = clean_exe(PathBuf::from(OsStr::from_bytes(raw)));
                assert!(exe.as_os_str().len() <= raw.len());
            }
            8 => {
                if let Some(c) = cgroup::parse(&text) {
                    check_container(&c);
                }
            }
            _ => {
                if let Some(c) = cgroup::parse_path(&text) {
                    check_container(&c);
                }
            }
        }
    });
}
