#!/bin/busybox sh
# vm-tests stage 1, /init of the initramfs. Loads the kernel's own modules, mounts the host
# root read-only over virtio-9p with a tmpfs overlay on top, and switch_roots into it to run
# stage 2. Placeholders (@...@) are filled in by vm-tests/src/initramfs.rs.
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

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,@NINEP_CACHE@ hostroot /mnt/lower \
  || fail "mounting the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw || fail "mounting the overlay's tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot \
  || fail "mounting the tmpfs overlay on the host root"

mkdir -p /newroot/.vm-tests || fail "writing to the overlay"
cp /bin/busybox /stage2.sh /newroot/.vm-tests/ || fail "copying stage 2 into the overlay"
for d in proc sys dev; do
  mount --move "/$d" "/newroot/$d" || fail "moving /$d into the new root"
done
exec switch_root /newroot /.vm-tests/busybox sh /.vm-tests/stage2.sh
