# vm-tests --systemd: run by vm-tests-command.service once multi-user.target is reached (systemd
# is PID 1). Runs the command as root with an explicit environment, reports its exit code on the
# console and powers off at once (the disk is a snapshot: nothing needs to be synced).
# Placeholders (@...@) are filled in by vm-tests/src/initramfs.rs.
ulimit -n 65536 2>/dev/null
cd @CWD@ || { echo "VM-TESTS-INIT-FAILED: cd @CWD@ (the host's working directory under @HOST_MOUNT@)"; systemctl poweroff --force --force; }
echo "VM-TESTS-COMMAND-START release=$(uname -r) init=$(cat /proc/1/comm)"
env -i @ENV@ @COMMAND@ </dev/null
rc=$?
echo
echo "VM-TESTS-EXIT-CODE=$rc"
systemctl poweroff --force --force
