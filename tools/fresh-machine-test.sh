#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# fresh-machine-test.sh: runs the README's test command the way a newcomer
# would, on a machine that has nothing but a minimal Debian bookworm: a
# debootstrap --variant=minbase chroot (Priority: required packages and apt)
# gets a clean clone of this repository's HEAD, and `tools/quickstart.sh
# test` runs inside it, installing every package itself. A package that the
# tests need but the script does not install shows up here as a failure,
# even when the developer machine has it.
#
#   tools/fresh-machine-test.sh [CHROOT-DIR] [-- QUICKSTART-ARGS...]
#
# CHROOT-DIR defaults to /var/tmp/diskstack-fresh; it is made once and kept
# (delete it for a new one). Every run clones HEAD anew into it. The apt
# sources are the host's, so the chroot sees the same archive. Needs root
# and debootstrap (tools/quickstart.sh installs it). Environment: as for
# quickstart.sh (QUICKSTART_SKIP_VM=1 ...), passed through.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-/var/tmp/diskstack-fresh}
[ $# -gt 0 ] && shift
[ "${1:-}" = -- ] && shift
qs_args=("$@")
[ ${#qs_args[@]} -gt 0 ] || qs_args=(test)

say() { printf '\033[1mfresh-machine-test:\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "debootstrap is missing (tools/quickstart.sh deps installs it)"
command -v git >/dev/null || die "git is missing"

mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

if [ ! -x "$dir/usr/bin/apt-get" ]; then
	say "debootstrap --variant=minbase bookworm $dir ($mirror)"
	rm -rf "$dir"
	debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
		{ tail -n 30 "$dir.debootstrap.log" >&2; die "debootstrap failed"; }
fi

# The host's apt sources (security and updates too: the VM suite fetches
# the 6.12 kernel from bookworm-security).
rm -f "$dir/etc/apt/sources.list"
mkdir -p "$dir/etc/apt/sources.list.d"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && cp "$f" "$dir$f"
done
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
# debootstrap writes no /etc/hosts; every installed Debian system has one
# naming localhost (the TLS tests connect to localhost, the name in their
# certificates), so the chroot gets the installer's.
[ -s "$dir/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
	> "$dir/etc/hosts"

mounted=()
cleanup() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -l "${mounted[i]}" 2>/dev/null || true
	done
}
trap cleanup EXIT
mnt() { mount "$@" && mounted+=("${!#}"); }
mnt -t proc proc "$dir/proc"
mnt -t sysfs sys "$dir/sys"
mnt --rbind /dev "$dir/dev"
# On a host with shared mounts (systemd), the lazy unmount at exit would
# otherwise propagate to the host's own /dev/pts and /dev/shm.
mount --make-rslave "$dir/dev"
mnt -t tmpfs tmpfs "$dir/tmp"
mnt -t tmpfs tmpfs "$dir/run"

rm -rf "$dir/root/diskstack"
git clone -q --no-local "$top" "$dir/root/diskstack"
say "$(git -C "$dir/root/diskstack" log --oneline -1)"
say "running tools/quickstart.sh ${qs_args[*]} in the chroot"
env_pass=()
for v in $(compgen -e | grep -E '^(QUICKSTART_|FUZZ_SECONDS$|JOBS$|DISKSTACK_VM_)'); do
	env_pass+=("$v=${!v}")
done
chroot "$dir" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${env_pass[@]}" \
	/bin/bash -c 'cd /root/diskstack && exec tools/quickstart.sh "$@"' quickstart "${qs_args[@]}"
