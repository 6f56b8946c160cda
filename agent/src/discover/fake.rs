//! Fake proc filesystem for tests.

use std::path::Path;

/// `/proc/net/tcp` of netns 1: LISTEN 8080 (inode 11111), 3306 (22222); one established
/// socket and one listener without inode.
pub const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 11111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 22222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 33333 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
";
/// `/proc/net/tcp6` of netns 1: LISTEN 8081 (inode 44444).
pub const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 44444 1 0000000000000000 100 0 0 10 0
";

/// Builds processes in a fake proc root.
pub struct FakeProc {
    pub dir: tempfile::TempDir,
}

impl FakeProc {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("uptime"), "100000.00 5.00\n").unwrap();
        FakeProc { dir }
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    /// Adds a process; `netns` selects the tcp table set written with [`Self::net`].
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        pid: u32,
        ppid: u32,
        exe: Option<&str>,
        cmdline: &[&str],
        start: u64,
        env: &[&str],
        sockets: &[u64],
        netns: u64,
    ) {
        // Built aside and renamed in, so a concurrent scan never sees half a process.
        let d = self.root().join(format!(".tmp-{pid}"));
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::create_dir_all(d.join("ns")).unwrap();
        std::fs::create_dir_all(d.join("net")).unwrap();
        let comm = exe.and_then(|e| e.rsplit('/').next()).unwrap_or("kworker/0:1");
        let stat = format!("{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1 1 0");
        std::fs::write(d.join("stat"), stat).unwrap();
        let mut cl = cmdline.join("\0");
        if !cl.is_empty() {
            cl.push('\0');
        }
        std::fs::write(d.join("cmdline"), cl).unwrap();
        std::fs::write(d.join("environ"), env.join("\0")).unwrap();
        if let Some(exe) = exe {
            std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
        }
        for (i, inode) in sockets.iter().enumerate() {
            std::os::unix::fs::symlink(format!("socket:[{inode}]"), d.join("fd").join((i + 3).to_string())).unwrap();
        }
        std::os::unix::fs::symlink("/dev/null", d.join("fd").join("0")).unwrap();
        std::os::unix::fs::symlink(format!("net:[{netns}]"), d.join("ns").join("net")).unwrap();
        let (tcp, tcp6) = if netns == 1 { (TCP, TCP6) } else { (TCP.lines().next().unwrap_or(""), "") };
        std::fs::write(d.join("net/tcp"), tcp).unwrap();
        if !tcp6.is_empty() {
            std::fs::write(d.join("net/tcp6"), tcp6).unwrap();
        }
        std::fs::rename(&d, self.root().join(pid.to_string())).unwrap();
    }
    pub fn remove(&self, pid: u32) {
        std::fs::remove_dir_all(self.root().join(pid.to_string())).unwrap();
    }
}
