#!/usr/bin/env bash
# Prepares one guest kernel for tools/kernels/exec.sh and prints its
# directory. Idempotent: what is already in the cache is reused.
#
# usage: prepare.sh CACHE_DIR PACKAGE
#
# PACKAGE is a Debian kernel image package (linux-image-6.1.0-56-amd64) or a
# metapackage (linux-image-amd64), which is resolved to the versioned
# package it depends on, so the matrix follows Debian's security updates.
#
# The cache is outside the clone so that later clones and CI runs on this
# machine reuse the download (about 70 MB, 400 MB unpacked). In it:
#   <package>/root/            the unpacked package (boot/, lib/modules/)
#   <package>/vmlinux          the kernel decompressed to an ELF: with qboot
#                              it boots through PVH in ~3 s instead of ~8 s
#   <package>/initramfs.cpio   busybox, the 9p modules and tools/kernels/init
set -euo pipefail
cache=$1 pkg=$2
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "kernels: $*" >&2; }

# qemu runs the guest (TCG when there is no KVM), busybox-static is the
# initramfs's userland and indexes modules, xz decompresses the vmlinuz.
missing=
for p in qemu-system-x86 busybox-static xz-utils; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	log "installing$missing"
	[ "$(id -u)" -eq 0 ] || { log "need root to install$missing"; exit 1; }
	# Quiet unless it fails: dpkg's progress would bury the test output.
	mkdir -p "$cache"
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $missing; } >"$cache/apt.log" 2>&1; then
		cat "$cache/apt.log" >&2
		exit 1
	fi
fi

# A metapackage depends on exactly one linux-image-<version> package.
resolve() {
	apt-cache depends "$pkg" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}
if ! apt-cache show "$pkg" >/dev/null 2>&1; then
	log "apt does not know $pkg; apt-get update"
	apt-get update -qq
fi
name=$(resolve)
name=${name:-$pkg}
dir=$cache/$name
# One preparation at a time per cache: clones on this machine share it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ ! -e "$dir/ready" ]; then
	log "fetching $name into $dir"
	rm -rf "$dir" && mkdir -p "$dir/dl"
	# The cache may sit in a home that apt's _apt user cannot enter.
	get() { (cd "$dir/dl" && apt-get download -q -o APT::Sandbox::User=root "$name" >&2); }
	get || { apt-get update -qq && get; }
	dpkg-deb -x "$dir"/dl/*.deb "$dir/root"
	rm -rf "$dir/dl"
	ver=$(basename "$(ls -d "$dir"/root/lib/modules/*)")
	# Decompress the bzImage payload (Debian's is xz): find the xz magic
	# and decompress one stream; what follows it is not part of it. If
	# that fails, exec.sh boots the vmlinuz itself, only slower.
	vmlinuz=$dir/root/boot/vmlinuz-$ver
	off=$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1)
	# (xz stops reading after its stream: tail's SIGPIPE is expected.)
	if [ -n "$off" ] && xz -dc --single-stream <(tail -c +$((off + 1)) "$vmlinuz") >"$dir/vmlinux.tmp" 2>/dev/null; then
		mv "$dir/vmlinux.tmp" "$dir/vmlinux"
	else
		log "could not decompress $vmlinuz; booting it as is"
		rm -f "$dir/vmlinux.tmp"
	fi
	# modules.dep and modules.alias, for the guest's module autoload.
	busybox depmod -b "$dir/root" "$ver"
	echo "$ver" >"$dir/ready"
fi
ver=$(cat "$dir/ready")
# Leftovers of exec.sh runs that were killed (a day old: none still runs).
find "$dir" -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} +

# The initramfs is rebuilt every time (it takes well under a second), so a
# change to tools/kernels/init needs no cache invalidation.
ird=$(mktemp -d "$dir/initramfs.XXXXXX")
trap 'rm -rf "$ird"' EXIT
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules/"$ver"}
cp /bin/busybox "$ird/bin/"
cp "$here/init" "$ird/init"
chmod 755 "$ird/init"
# The 9p modules and everything they depend on, with their modules.dep lines.
mods="kernel/drivers/virtio/virtio_pci.ko kernel/net/9p/9pnet_virtio.ko kernel/fs/9p/9p.ko"
deps=$dir/root/lib/modules/$ver/modules.dep
all=$(for m in $mods; do grep "^$m:" "$deps" | tr -d ':'; done | tr ' ' '\n' | sort -u)
for m in $all; do
	mkdir -p "$ird/lib/modules/$ver/$(dirname "$m")"
	cp "$dir/root/lib/modules/$ver/$m" "$ird/lib/modules/$ver/$m"
	grep "^$m:" "$deps" >>"$ird/lib/modules/$ver/modules.dep"
done
(cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null) >"$dir/initramfs.cpio.tmp"
mv "$dir/initramfs.cpio.tmp" "$dir/initramfs.cpio"
echo "$dir"
