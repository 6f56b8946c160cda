#!/bin/busybox sh
# vm-tests --systemd, /init of the initramfs. Loads the kernel's own modules (virtio, ext4, 9p:
# the Debian root file system has no kernel modules of its own), mounts the cached Debian image
# (/dev/vda, ext4, a QEMU snapshot: writes vanish at power-off) as the new root, the host root
# read-only over 9p on @HOST_MOUNT@, copies in the unit that runs the command, and hands over
# to systemd as PID 1. Placeholders (@...@) are filled in by vm-tests/src/initramfs.rs.
export PATH=/bin
/bin/busybox --install -s /bin

fail() {
  echo "VM-TESTS-INIT-FAILED: $*"
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for m in @MODULES@; do
  insmod "/modules/$m.ko" || fail "insmod $m"
done

# The block device appears asynchronously once virtio_blk has probed it.
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && fail "no /dev/vda (the root file system image) after 10 s"
  sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "mounting the root file system image /dev/vda (ext4)"
[ -x /newroot/lib/systemd/systemd ] || fail "the root file system image has no /lib/systemd/systemd"
mkdir -p /newroot@HOST_MOUNT@
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,@NINEP_CACHE@ hostroot /newroot@HOST_MOUNT@ \
  || fail "mounting the host root (9p tag hostroot) on @HOST_MOUNT@"
cp -a /payload/. /newroot/ || fail "copying the command unit into the root file system"

for d in proc sys dev; do
  mount --move "/$d" "/newroot/$d" || fail "moving /$d into the new root"
done
exec switch_root /newroot /lib/systemd/systemd
