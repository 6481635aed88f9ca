#!/usr/bin/env bash
# setup.sh installs what the havip VM lab needs on a Debian 12 host (run as root):
# qemu, busybox-static, cpio and ipvsadm from Debian, and Debian's cloud kernel
# unpacked into a cache dir ($VMLAB_CACHE, default /var/cache/havip-vmlab).
# It is idempotent: a second run with everything present only checks and exits.
#
# Output (last line): the unpacked kernel tree, e.g.
#   /var/cache/havip-vmlab/linux-image-6.1.0-56-cloud-amd64
set -euo pipefail

CACHE="${VMLAB_CACHE:-/var/cache/havip-vmlab}"
log() { echo "vmlab/setup: $*" >&2; }
die() { echo "vmlab/setup: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install, dpkg -x into $CACHE)"

updated=0
apt_update() {
	if [ "$updated" = 0 ]; then
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		updated=1
	fi
}

# Host packages: install only what is missing (dpkg-query is fast and offline).
missing=()
for p in qemu-system-x86 busybox-static cpio ipvsadm; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt_update
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
		|| die "apt-get install ${missing[*]} failed"
fi

mkdir -p "$CACHE"

# A cached tree is reused without asking apt: fast, and works offline. The
# marker file is written only after a complete unpack.
current="$CACHE/current"
if [ -L "$current" ] && [ -f "$current/.vmlab-complete" ] && [ -z "${VMLAB_REFRESH:-}" ]; then
	tree="$(readlink -f "$current")"
	log "cached kernel $(basename "$tree")"
	echo "$tree"
	exit 0
fi

# Kernel package name from the metapackage, e.g. linux-image-6.1.0-56-cloud-amd64.
kpkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
pkg="$(kpkg || true)"
if [ -z "$pkg" ]; then
	apt_update
	pkg="$(kpkg || true)"
fi
[ -n "$pkg" ] || die "cannot resolve the kernel package from 'apt-cache depends linux-image-cloud-amd64'"

tree="$CACHE/$pkg"
if [ ! -f "$tree/.vmlab-complete" ]; then
	deb="$(ls "$CACHE/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
	if [ -z "$deb" ]; then
		log "apt-get download $pkg"
		if ! (cd "$CACHE" && apt-get -o APT::Sandbox::User=root download "$pkg" >&2); then
			apt_update
			(cd "$CACHE" && apt-get -o APT::Sandbox::User=root download "$pkg" >&2) || die "apt-get download $pkg failed"
		fi
		deb="$(ls "$CACHE/${pkg}_"*.deb | head -n1)"
	fi
	log "dpkg -x $(basename "$deb")"
	rm -rf "$tree.tmp"
	dpkg -x "$deb" "$tree.tmp" || die "dpkg -x $deb failed"
	ls "$tree.tmp"/boot/vmlinuz-* >/dev/null 2>&1 || die "$deb has no boot/vmlinuz-*"
	rm -rf "$tree"
	mv "$tree.tmp" "$tree"
	touch "$tree/.vmlab-complete"
fi
ln -sfn "$pkg" "$current"
log "kernel $pkg ready in $tree"
echo "$tree"
