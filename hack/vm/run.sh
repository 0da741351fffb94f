#!/usr/bin/env bash
# Boots a Debian kernel under QEMU (software emulation) with an initramfs made
# of busybox, lvm2, e2fsprogs, xfsprogs and a guest program built by cargo, and
# runs that program against a sparse virtio disk. Prints "VM TEST: PASS" or
# "VM TEST: FAIL" and exits 0 only on PASS.
#
#   hack/vm/run.sh --guest <binary> [--extra <binary>]... [--timeout SECONDS]
#                  [--disk-mib N] [--hostfwd HOSTPORT:GUESTPORT]
#                  [-- guest args...]
#
# Each --extra program goes to /usr/sbin/<its name> in the guest, with the
# shared libraries it needs. --hostfwd gives the guest a user-mode network
# (the guest is 10.0.2.15, the host's loopback is 10.0.2.2) and forwards
# 127.0.0.1:HOSTPORT on the host to GUESTPORT in the guest.
#
# Cached under target/vm-cache/ (or $LVMPIN_VM_CACHE): the kernel package, its
# unpacked tree, and the base initramfs (everything but the guest program).
# Needs: apt-get, dpkg-deb, depmod/modprobe (kmod), qemu-system-x86_64,
# busybox (static), lvm2, e2fsprogs, xfsprogs, thin-provisioning-tools, cpio.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${LVMPIN_VM_CACHE:-$root/target/vm-cache}
guest=""
extras=()
timeout_s=240
disk_mib=2048
guest_args=()
hostfwd=""

while [ $# -gt 0 ]; do
  case "$1" in
    --guest) guest=$2; shift 2 ;;
    --extra) extras+=("$2"); shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --disk-mib) disk_mib=$2; shift 2 ;;
    --hostfwd) hostfwd=$2; shift 2 ;;
    --) shift; guest_args=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

fail() { echo "VM TEST: FAIL ($*)"; exit 1; }
[ -n "$guest" ] && [ -x "$guest" ] || fail "--guest must name an executable"
for x in "${extras[@]}"; do [ -x "$x" ] || fail "--extra $x is not an executable"; done
net=()
if [ -n "$hostfwd" ]; then
  [[ "$hostfwd" =~ ^[0-9]+:[0-9]+$ ]] || fail "--hostfwd wants HOSTPORT:GUESTPORT, got $hostfwd"
  net=(-netdev "user,id=net0,hostfwd=tcp:127.0.0.1:${hostfwd%%:*}-:${hostfwd##*:}"
       -device virtio-net-pci,netdev=net0)
fi
for tool in apt-cache apt-get dpkg-deb depmod modprobe qemu-system-x86_64 busybox cpio ldd flock; do
  command -v "$tool" >/dev/null || fail "missing host tool: $tool"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lvmpin-vm.XXXXXX")
qemu_pid=""
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    # $qemu_pid is `timeout`, which passes TERM on to QEMU; a KILL would
    # leave QEMU running without it.
    kill -TERM "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    # Stopped from outside: what the guest printed is still worth seeing.
    cat "$work/console.log" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$cache"
# One builder at a time; concurrent runs share the cache.
exec 9>"$cache/.lock"
flock 9

# ---- kernel: the ABI that linux-image-amd64 currently points to ----
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || fail "cannot resolve the kernel ABI from 'apt-cache depends linux-image-amd64' (run apt-get update?)"
kver=${kpkg#linux-image-}
ktree=$cache/$kpkg
if [ ! -f "$ktree/.complete" ]; then
  mkdir -p "$cache/debs"
  if ! ls "$cache/debs/${kpkg}"_*.deb >/dev/null 2>&1; then
    echo "vm: downloading $kpkg"
    (cd "$cache/debs" && { apt-get download "$kpkg" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download "$kpkg" >/dev/null; }; }) \
      || fail "apt-get download $kpkg failed"
  fi
  rm -rf "$ktree" "$ktree.tmp"
  dpkg-deb -x "$(ls "$cache/debs/${kpkg}"_*.deb | head -n1)" "$ktree.tmp"
  # The package ships no modules.dep (postinst makes it); build it for modprobe.
  depmod -b "$ktree.tmp" "$kver"
  mv "$ktree.tmp" "$ktree"
  touch "$ktree/.complete"
fi
vmlinuz=$ktree/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || fail "no kernel image at $vmlinuz"

# Copies a program and the shared libraries ldd names to the same paths under $2.
copy_with_libs() {
  local bin=$1 dest=$2 name=${3:-$(basename "$1")}
  install -D -m 0755 "$bin" "$dest/usr/sbin/$name"
  # A static program has no libraries: ldd fails and grep finds nothing.
  { ldd "$bin" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
    [ -e "$dest$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dest$lib"
  done
}

# ---- base initramfs: everything but the guest program ----
guest_tools="lvm mkfs.ext4 mkfs.xfs blkid resize2fs xfs_growfs thin_check e2fsck dmsetup"
# Rebuild when this script, the init or any host tool we copy changes.
key=$( { cat "$0" "$here/init"; for t in $guest_tools; do stat -L -c '%n %s %Y' "$(command -v "$t" || echo "/missing/$t")" 2>/dev/null || echo "missing $t"; done; } \
  | sha256sum | cut -c1-12)
base=$cache/initramfs-$kver-$key.cpio
if [ ! -f "$base" ]; then
  echo "vm: building base initramfs for $kver"
  r=$work/base
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,results,etc/lvm,lib/modules}
  install -m 0755 "$(command -v busybox)" "$r/bin/busybox"
  for applet in sh ash mount umount insmod mkdir cat echo poweroff reboot sync sleep ls dmesg \
                uname tee grep rm cp test true false head tail seq ip; do
    ln -sf busybox "$r/bin/$applet"
  done
  for tool in $guest_tools; do
    path=$(command -v "$tool") || fail "missing host tool for the guest: $tool"
    copy_with_libs "$path" "$r" "$tool"
  done
  [ -f /etc/mke2fs.conf ] && install -m 0644 /etc/mke2fs.conf "$r/etc/mke2fs.conf"
  # No udev in the guest: lvm creates device nodes itself and never waits for udev.
  cat > "$r/etc/lvm/lvm.conf" <<'CONF'
devices {
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
}
backup {
    backup = 0
    archive = 0
}
CONF
  # Modules and their dependency closure, in load order, decompressed so that
  # busybox insmod can load them.
  : > "$r/modules.list"
  # dm_snapshot: lvcreate --snapshot checks for the snapshot target even when
  # it makes a thin snapshot, and the guest has no modprobe to load it.
  for m in virtio_pci virtio_blk virtio_net dm_mod dm_thin_pool dm_snapshot ext4 xfs 9p 9pnet_virtio; do
    modprobe -d "$ktree" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    name=$(basename "$ko")
    case "$name" in
      *.ko.xz) xz -dc "$ko" > "$r/lib/modules/${name%.xz}"; name=${name%.xz} ;;
      *.ko.zst) zstd -qdc "$ko" > "$r/lib/modules/${name%.zst}"; name=${name%.zst} ;;
      *) cp "$ko" "$r/lib/modules/$name" ;;
    esac
    echo "/lib/modules/$name" >> "$r/modules.list"
  done
  [ -s "$r/modules.list" ] || fail "no kernel modules resolved"
  install -m 0755 "$here/init" "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet) > "$base.tmp"
  rm -f "$cache"/initramfs-*.cpio
  mv "$base.tmp" "$base"
fi
flock -u 9

# ---- per-run: guest program archive appended to the cached base ----
g=$work/guest
mkdir -p "$g"
copy_with_libs "$guest" "$g" lvmpin-vm-guest
for x in "${extras[@]}"; do copy_with_libs "$x" "$g"; done
printf '%s\n' "${guest_args[@]}" > "$g/guest.args"
(cd "$g" && find . | cpio -o -H newc --quiet) > "$work/guest.cpio"
cat "$base" "$work/guest.cpio" > "$work/initrd.cpio"

mkdir -p "$work/results"
truncate -s "${disk_mib}M" "$work/disk.raw"

echo "vm: booting $kver under TCG (timeout ${timeout_s}s)"
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -nodefaults -no-user-config -display none -no-reboot \
  -serial stdio -monitor none \
  -kernel "$vmlinuz" -initrd "$work/initrd.cpio" \
  -append "console=ttyS0 panic=-1 loglevel=4" \
  -drive "file=$work/disk.raw,format=raw,if=virtio,cache=unsafe" \
  -virtfs "local,path=$work/results,mount_tag=results,security_model=none,id=results" \
  "${net[@]}" \
  </dev/null > "$work/console.log" 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=""
set -e

cat "$work/console.log"
rc=$(cat "$work/results/rc" 2>/dev/null || echo missing)
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
  fail "QEMU timed out after ${timeout_s}s"
fi
if [ "$rc" = 0 ] && grep -q '^LVMPIN-VM-PASS' "$work/console.log"; then
  echo "VM TEST: PASS"
  exit 0
fi
fail "guest exit status: $rc, qemu exit status: $qemu_rc"
