//! Container and pod of a process, from `/proc/<pid>/cgroup`.
//!
//! Every container runtime puts a container's processes in a cgroup whose last path segments
//! carry the 64-hex container id, and kubelet nests it under a per-pod cgroup named after the
//! pod UID. The layouts differ by cgroup version, cgroup driver and runtime:
//!
//! | driver  | runtime    | container cgroup (under the pod's)                                   |
//! |---------|------------|-----------------------------------------------------------------------|
//! | systemd | containerd | `kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope` |
//! | systemd | CRI-O      | `kubepods-pod<uid with _>.slice/crio-<id>.scope` (`crio-conmon-` is the monitor) |
//! | systemd | Docker     | `kubepods-burstable-pod<uid with _>.slice/docker-<id>.scope`          |
//! | cgroupfs| any        | `kubepods/besteffort/pod<uid>/<id>` (`kubepods/pod<uid>/<id>` for Guaranteed) |
//!
//! cgroup v1 lines (`12:pids:/kubepods/...`) and the v2 line (`0::/kubepods.slice/...`) are
//! read alike; nested setups (kind, a kubelet in Docker) prefix the path with the outer
//! container, so the innermost (last) id wins. Outside Kubernetes a plain Docker or Podman
//! container (`/docker/<id>`, `libpod-<id>.scope`) still yields its container id.

/// The container a process runs in, as its cgroup path tells.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// The runtime's 64-hex container id, lowercase.
    pub container_id: String,
    /// The pod UID with dashes (`0b1c...-...`), when the path has a kubepods pod segment.
    pub pod_uid: Option<String>,
}

/// Runtime prefixes of systemd scope names; `crio-conmon-` is CRI-O's monitor process,
/// not the container.
const SCOPE_PREFIXES: &[&str] = &["cri-containerd-", "crio-", "docker-", "libpod-", "containerd-"];

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in one path segment, if it names a container.
fn container_id(segment: &str) -> Option<String> {
    if segment.starts_with("crio-conmon-") {
        return None;
    }
    let s = segment.strip_suffix(".scope").unwrap_or(segment);
    let s = SCOPE_PREFIXES.iter().find_map(|p| s.strip_prefix(p)).unwrap_or(s);
    is_hex64(s).then(|| s.to_ascii_lowercase())
}

/// The pod UID in one path segment: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(segment: &str) -> Option<String> {
    let s = segment.strip_suffix(".slice").unwrap_or(segment);
    let at = s.rfind("pod")?;
    if at > 0 && !s[..at].ends_with('-') {
        return None;
    }
    let uid = s[at + 3..].replace('_', "-");
    let groups: Vec<&str> = uid.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(shape).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| uid.to_ascii_lowercase())
}

/// The container of one cgroup path (`/kubepods.slice/.../cri-containerd-<id>.scope`).
pub fn parse_path(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let idx = segments.iter().rposition(|s| container_id(s).is_some())?;
    let container_id = container_id(segments[idx])?;
    let pod_uid = segments[..idx].iter().rev().find_map(|s| pod_uid(s));
    Some(ContainerRef { container_id, pod_uid })
}

/// The container of a process from the text of `/proc/<pid>/cgroup`: the first line (v1
/// hierarchies come before the v2 `0::` line) whose path names a container.
pub fn parse(text: &str) -> Option<ContainerRef> {
    text.lines().find_map(|line| {
        // `hierarchy-id:controllers:path`; the path itself may contain ':'.
        let mut parts = line.splitn(3, ':');
        let (_, _, path) = (parts.next()?, parts.next()?, parts.next()?);
        parse_path(path)
    })
}

/// Reads `<proc_root>/<pid>/cgroup`; `None` when unreadable or not in a container.
pub fn read(proc_root: &std::path::Path, pid: u32) -> Option<ContainerRef> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f7d5b6c8e9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c";
    const UID: &str = "6b1e5a2c-3d4f-4a6b-8c9d-0e1f2a3b4c5d";

    fn uid_(s: &str) -> String {
        s.replace('-', "_")
    }

    fn both(text: &str) -> Option<(String, Option<String>)> {
        parse(text).map(|c| (c.container_id, c.pod_uid))
    }

    fn pod() -> Option<(String, Option<String>)> {
        Some((ID.to_string(), Some(UID.to_string())))
    }

    #[test]
    fn cgroup_v2_systemd_containerd() {
        let u = uid_(UID);
        let line = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(both(&line), pod());
        let burstable = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(both(&burstable), pod());
        // Guaranteed pods sit directly under kubepods.slice.
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope");
        assert_eq!(both(&guaranteed), pod());
    }

    #[test]
    fn cgroup_v2_systemd_crio_and_its_monitor() {
        let u = uid_(UID);
        let line =
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-{ID}.scope");
        assert_eq!(both(&line), pod());
        let conmon = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(both(&conmon), None);
    }

    #[test]
    fn cgroup_v2_systemd_docker_shim() {
        let u = uid_(UID);
        let line =
            format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{ID}.scope");
        assert_eq!(both(&line), pod());
    }

    #[test]
    fn cgroup_v2_cgroupfs_driver() {
        assert_eq!(both(&format!("0::/kubepods/besteffort/pod{UID}/{ID}")), pod());
        assert_eq!(both(&format!("0::/kubepods/burstable/pod{UID}/{ID}")), pod());
        assert_eq!(both(&format!("0::/kubepods/pod{UID}/{ID}")), pod());
    }

    #[test]
    fn cgroup_v1_layouts() {
        let u = uid_(UID);
        let cgroupfs = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n\
             11:hugetlb:/kubepods/besteffort/pod{UID}/{ID}\n\
             4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n\
             0::/\n"
        );
        assert_eq!(both(&cgroupfs), pod());
        let systemd = format!(
            "11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope\n\
             10:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(both(&systemd), pod());
        // The first line naming a container wins; lines without one are skipped.
        let mixed = format!("9:name=systemd:/\n8:pids:/kubepods/pod{UID}/{ID}\n0::/\n");
        assert_eq!(both(&mixed), pod());
    }

    #[test]
    fn nested_kind_and_kubelet_in_docker() {
        let outer = "a".repeat(64);
        let u = uid_(UID);
        let kind = format!(
            "0::/system.slice/docker-{outer}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(both(&kind), pod());
        let v1 = format!("5:pids:/docker/{outer}/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(both(&v1), pod());
    }

    #[test]
    fn plain_containers_outside_kubernetes() {
        assert_eq!(both(&format!("0::/system.slice/docker-{ID}.scope")), Some((ID.into(), None)));
        assert_eq!(both(&format!("13:pids:/docker/{ID}")), Some((ID.into(), None)));
        assert_eq!(
            both(&format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container")),
            Some((ID.into(), None))
        );
        assert_eq!(both(&format!("0::/machine.slice/libpod-{ID}.scope")), Some((ID.into(), None)));
    }

    #[test]
    fn no_container() {
        assert_eq!(both("0::/\n"), None);
        assert_eq!(both("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(both("0::/system.slice/containerd.service\n"), None);
        assert_eq!(both("12:pids:/system.slice/kubelet.service\n1:name=systemd:/init.scope\n"), None);
        // 32-hex ids (sandboxes of some tools) and near misses are not containers.
        assert_eq!(both("4:memory:/process_api/02c96450313ab408b2e4c80cd137ae58\n"), None);
        assert_eq!(both(&format!("0::/kubepods/besteffort/pod{UID}/{}", &ID[..63])), None);
        assert_eq!(both(&format!("0::/kubepods/besteffort/pod{UID}/{}z", &ID[..63])), None);
        assert_eq!(both(""), None);
        assert_eq!(both("garbage"), None);
    }

    #[test]
    fn pod_uid_shapes() {
        assert_eq!(pod_uid(&format!("pod{UID}")), Some(UID.into()));
        assert_eq!(pod_uid(&format!("kubepods-besteffort-pod{}.slice", uid_(UID))), Some(UID.into()));
        assert_eq!(pod_uid(&format!("kubepods-pod{}.slice", uid_(UID))), Some(UID.into()));
        assert_eq!(pod_uid(&format!("pod{}", UID.to_uppercase())), Some(UID.into()));
        assert_eq!(pod_uid("podman"), None);
        assert_eq!(pod_uid("kubepods"), None);
        assert_eq!(pod_uid(&format!("xpod{UID}")), None);
        // A container directly under kubepods, with no pod segment: id only.
        assert_eq!(both(&format!("0::/kubepods/{ID}")), Some((ID.into(), None)));
    }

    #[test]
    fn uppercase_ids_are_normalised() {
        let line = format!("0::/kubepods/pod{UID}/{}", ID.to_uppercase());
        assert_eq!(both(&line), pod());
    }

    #[test]
    fn reads_from_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("7")).unwrap();
        std::fs::write(dir.path().join("7/cgroup"), format!("0::/kubepods/pod{UID}/{ID}\n")).unwrap();
        assert_eq!(read(dir.path(), 7).map(|c| c.container_id), Some(ID.to_string()));
        assert_eq!(read(dir.path(), 8), None);
    }
}
