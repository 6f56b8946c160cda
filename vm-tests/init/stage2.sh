# vm-tests stage 2: PID 1 in the host's root (9p, read-only, under a tmpfs overlay). Mounts the
# kernel filesystems the agent needs, raises limits and runs the command with an explicit
# environment, then reports its exit code on the console and powers off.
# Placeholders (@...@) are filled in by vm-tests/src/initramfs.rs.
BB=/.vm-tests/busybox

fail() {
  echo "VM-TESTS-INIT-FAILED: $*"
  $BB poweroff -f
}

$BB mkdir -p /dev/pts /dev/shm
$BB mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts || fail "mounting devpts"
$BB mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mounting /dev/shm"
$BB ln -sfn /proc/self/fd /dev/fd
$BB ln -sfn /proc/self/fd/0 /dev/stdin
$BB ln -sfn /proc/self/fd/1 /dev/stdout
$BB ln -sfn /proc/self/fd/2 /dev/stderr
# /tmp stays the host's (read through the overlay, written to its tmpfs): CI may run from a
# clone under /tmp, and the command runs in the host's working directory.
$BB mount -t tmpfs -o mode=0755 tmpfs /run || fail "mounting /run"
$BB mount -t bpf -o mode=0700 bpf /sys/fs/bpf || fail "mounting bpffs on /sys/fs/bpf"
$BB mount -t tracefs tracefs /sys/kernel/tracing || fail "mounting tracefs on /sys/kernel/tracing"
$BB mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
$BB mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
if [ "@CGROUP@" = hybrid ]; then
  # Like a systemd host in hybrid mode: v1 controllers each on its own, cgroup2 on unified/.
  $BB mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup || fail "mounting tmpfs on /sys/fs/cgroup"
  for c in $($BB awk '!/^#/ && $4 == 1 { print $1 }' /proc/cgroups); do
    $BB mkdir -p "/sys/fs/cgroup/$c"
    $BB mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || fail "mounting the cgroup v1 $c hierarchy"
  done
  $BB mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
  $BB mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || fail "mounting the name=systemd hierarchy"
  $BB mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || fail "mounting cgroup2 on /sys/fs/cgroup/unified"
else
  $BB mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mounting cgroup2 on /sys/fs/cgroup"
fi
$BB ip link set lo up || fail "bringing lo up"
$BB hostname vm-tests
[ -e /sys/kernel/btf/vmlinux ] || fail "/sys/kernel/btf/vmlinux is missing: kernel $($BB uname -r) has no BTF"
ulimit -l unlimited || fail "raising RLIMIT_MEMLOCK"
ulimit -n 65536 2>/dev/null

cd @CWD@ || fail "cd @CWD@ (the host's working directory)"
echo "VM-TESTS-COMMAND-START release=$($BB uname -r)"
$BB env -i @ENV@ @COMMAND@ </dev/null
rc=$?
echo
echo "VM-TESTS-EXIT-CODE=$rc"
$BB poweroff -f
