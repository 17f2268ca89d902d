# SPDX-License-Identifier: MIT
# vm-lib.sh: the QEMU harness of tests/vm/ (bash; sourced).
#
# Boots Debian's own kernels under QEMU TCG with a busybox initramfs that
# carries the diskstack binary, real clients (fio, e2fsprogs, util-linux,
# nbd-client) and a guest script; results come back on the serial console
# as "VMTEST: PASS|FAIL|SKIP|INFO ..." lines (vm_results reads them; the
# suite is described in docs/testing.md).
#
#   6.12: linux-image-6.12-amd64 from bookworm-security, downloaded with
#         apt-get download and unpacked (never installed); has ublk_drv.
#   6.1:  the bookworm kernel, same way, plus ublk_drv.ko built out of tree
#         from linux-source-6.1 against the installed linux-headers (Debian
#         builds 6.1 without CONFIG_BLK_DEV_UBLK).
#
# Everything downloaded or built is cached in $VM_CACHE (default
# ${XDG_CACHE_HOME:-/var/cache}/diskstack-vm, outside the build tree, so CI
# runs on the same machine reuse it), under a lock. Functions:
#
#   vm_requires                  skip (77) unless the host tools are there
#   vm_prepare KERNEL             6.12 or 6.1: sets KDIR, KVER, KERNEL, MODS
#                                (and EXTRA_KO, the out-of-tree ublk_drv.ko)
#   vm_initrd OUT SUITE           build the initramfs for $KDIR/$KVER
#                                (plus VM_EXTRA_MODS and what a vm_stage_extra
#                                function of the test script adds)
#   vm_prepare_initrd KERNEL SUITE   vm_prepare, then vm_initrd into
#                                INITRD=$work/initrd-KERNEL.img
#   vm_boot LOG TIMEOUT APPEND [qemu args...]   boot, console to LOG
#                                (plus $DISKSTACK_VM_APPEND on the kernel
#                                command line, e.g. slub_debug=FZP)
#   vm_results LOG NAME          print the guest's results; 0 pass, 1 fail
#   vm_tally R / vm_exit         count each boot's vm_results; exit with
#                                the test's status once every boot is done
#   vm_wait_pidfile FILE PID     wait (10 s) for a server's pid file
#   vm_serve_retry WHAT LAUNCH   start a server on a random free $port
#   vm_watch_resize LOG          grow $work/disk.img (on $loopdev) once
#                                the guest asks; sets watch_pid
#   vm_watch_ctl LOG SOCK        run `diskstack ctl -S SOCK ARGS` for each
#                                "VMTEST: HOST-CTL ARGS" line of the guest;
#                                sets ctl_watch_pid
#   vm_host_requests LOG HANDLER run `HANDLER ACTION` for each new
#                                "VMTEST: HOST ACTION" line of the guest
set -uo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_TOP=$(cd "$VM_DIR/../.." && pwd)
VM_CACHE=${DISKSTACK_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/diskstack-vm}
VM_MEM=${DISKSTACK_VM_MEM:-2G}
VM_SMP=${DISKSTACK_VM_SMP:-2}
# Bump when the cached base initramfs must be rebuilt.
VM_BASE_VERSION=3

if [ -z "${DISKSTACK:-}" ]; then
	if [ -n "${abs_top_builddir:-}" ]; then
		DISKSTACK=$abs_top_builddir/diskstack
	else
		DISKSTACK=$VM_TOP/build/diskstack
	fi
fi

vm_log() { echo "vm: $*" >&2; }
vm_skip() { echo "$0: SKIP: $*"; exit 77; }
vm_die() { echo "$0: ERROR: $*" >&2; exit 99; }

# Host tools the harness needs; their absence is a skip, not a failure.
vm_requires()
{
	local t missing=()
	[ "$(id -u)" -eq 0 ] || vm_skip "needs root (apt-get download into the cache, depmod)"
	for t in qemu-system-x86_64 cpio depmod dpkg-deb apt-get apt-cache zstd fio mke2fs \
		blkdiscard fallocate losetup flock timeout ldd; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	# busybox-static: the guest has no C library for a dynamic busybox.
	[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=("busybox-static")
	if [ ${#missing[@]} -gt 0 ]; then
		# tools/quickstart.sh installed them all: there a gap is a failure.
		[ "${DISKSTACK_STRICT_DEPS:-0}" = 1 ] &&
			vm_die "missing host tools: ${missing[*]} (DISKSTACK_STRICT_DEPS=1)"
		vm_skip "missing host tools: ${missing[*]} (tools/quickstart.sh deps installs them)"
	fi
	[ -x "$DISKSTACK" ] || vm_skip "$DISKSTACK is not built"
	mkdir -p "$VM_CACHE/debs" || vm_die "cannot create $VM_CACHE"
}

# Runs "$@" with the cache lock held (several test scripts and CI jobs share
# the cache).
vm_locked()
{
	(
		flock 9 || exit 1
		"$@"
	) 9>"$VM_CACHE/.lock"
}

# vm_fetch PKG: the .deb of PKG in the cache (downloading it if needed).
vm_fetch()
{
	local pkg=$1 deb
	deb=$(ls "$VM_CACHE"/debs/"$pkg"_*.deb 2>/dev/null | head -n1)
	if [ -z "$deb" ]; then
		vm_log "downloading $pkg"
		(cd "$VM_CACHE/debs" && apt-get download "$pkg" >/dev/null 2>&1) ||
			return 1
		deb=$(ls "$VM_CACHE"/debs/"$pkg"_*.deb 2>/dev/null | head -n1)
	fi
	[ -n "$deb" ] && echo "$deb"
}

# vm_unpack_kernel PKG KVER: unpacks linux-image PKG into $VM_CACHE/k-KVER
# (with modules.dep, which a dpkg-deb -x tree lacks).
vm_unpack_kernel()
{
	local pkg=$1 kver=$2 dir=$VM_CACHE/k-$2 deb tmp
	[ -f "$dir/.done" ] && return 0
	deb=$(vm_fetch "$pkg") || { vm_log "apt-get download $pkg failed"; return 1; }
	tmp=$(mktemp -d "$VM_CACHE/.unpack.XXXXXX")
	dpkg-deb -x "$deb" "$tmp" || { rm -rf "$tmp"; return 1; }
	depmod -b "$tmp" "$kver" || { rm -rf "$tmp"; return 1; }
	rm -rf "$dir"
	mv "$tmp" "$dir" && touch "$dir/.done"
}

_vm_prepare_612()
{
	local pkg kver
	# Security updates rename the ABI: resolve through the meta-package.
	pkg=$(apt-cache depends linux-image-6.12-amd64 2>/dev/null |
		awk '/Depends: linux-image-6\.12/{print $2; exit}')
	if [ -z "$pkg" ]; then
		# Offline: any 6.12 unpacked earlier will do.
		kver=$(ls -d "$VM_CACHE"/k-6.12.* 2>/dev/null | tail -n1)
		[ -n "$kver" ] || { vm_log "linux-image-6.12-amd64 not found in apt (bookworm-security?)"; return 1; }
		echo "${kver##*/k-}" > "$VM_CACHE/.k612"
		return 0
	fi
	kver=${pkg#linux-image-}
	kver=${kver%-unsigned}
	vm_unpack_kernel "$pkg" "$kver" || return 1
	echo "$kver" > "$VM_CACHE/.k612"
}

vm_prepare_612()
{
	vm_locked _vm_prepare_612 || vm_die "cannot prepare the 6.12 kernel"
	KVER=$(cat "$VM_CACHE/.k612")
	KDIR=$VM_CACHE/k-$KVER
	KERNEL=$KDIR/boot/vmlinuz-$KVER
	EXTRA_KO=
	[ -f "$KERNEL" ] || vm_die "no kernel image $KERNEL"
}

# The 6.1 kernel is the one the installed headers are for: the out-of-tree
# module must match it exactly (vermagic, symbol CRCs).
_vm_prepare_61()
{
	local hdr kver srcver out src
	hdr=$(ls -d /usr/src/linux-headers-6.1.*-amd64 2>/dev/null | sort -V | tail -n1)
	[ -n "$hdr" ] || { vm_log "no linux-headers-6.1.*-amd64 installed"; return 2; }
	kver=${hdr#/usr/src/linux-headers-}
	[ -e "/lib/modules/$kver/build" ] || { vm_log "/lib/modules/$kver/build missing"; return 2; }
	[ -f /usr/src/linux-source-6.1.tar.xz ] || { vm_log "linux-source-6.1 is not installed"; return 2; }
	vm_unpack_kernel "linux-image-$kver" "$kver" ||
		{ vm_log "cannot fetch linux-image-$kver (is it still in the archive?)"; return 1; }

	srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null)
	out=$VM_CACHE/ublk61-$kver-$srcver
	if [ ! -f "$out/ublk_drv.ko" ]; then
		vm_log "building ublk_drv.ko for $kver from linux-source-6.1 $srcver"
		src=$(mktemp -d "$VM_CACHE/.src.XXXXXX")
		xz -dc -T2 /usr/src/linux-source-6.1.tar.xz |
			tar -x -C "$src" --wildcards 'linux-source-6.1/drivers/block/ublk_drv.c' ||
			{ rm -rf "$src"; return 1; }
		mkdir -p "$src/m"
		cp "$src/linux-source-6.1/drivers/block/ublk_drv.c" "$src/m/"
		echo 'obj-m := ublk_drv.o' > "$src/m/Kbuild"
		make -s -C "/lib/modules/$kver/build" M="$src/m" modules >"$src/build.log" 2>&1 ||
			{ cat "$src/build.log" >&2; rm -rf "$src"; return 1; }
		rm -rf "$out"
		mkdir -p "$out"
		cp "$src/m/ublk_drv.ko" "$out/"
		rm -rf "$src"
	fi
	echo "$kver $out/ublk_drv.ko" > "$VM_CACHE/.k61"
}

vm_prepare_61()
{
	local rc=0
	vm_locked _vm_prepare_61 || rc=$?
	[ $rc -eq 2 ] && vm_skip "the 6.1 kernel needs linux-headers-amd64 and linux-source-6.1 (tools/quickstart.sh deps)"
	[ $rc -eq 0 ] || vm_die "cannot prepare the 6.1 kernel and its ublk_drv.ko"
	read -r KVER EXTRA_KO < "$VM_CACHE/.k61"
	KDIR=$VM_CACHE/k-$KVER
	KERNEL=$KDIR/boot/vmlinuz-$KVER
	[ -f "$KERNEL" ] || vm_die "no kernel image $KERNEL"
}

# Modules every guest gets (with their dependencies); built-in ones are
# skipped. ublk_drv is staged but left for modprobe to load.
VM_MODS_COMMON="nbd ext4 crc32c_generic loop virtio_pci virtio_blk virtio_net"

vm_prepare()
{
	case $1 in
	6.12) vm_prepare_612; MODS="ublk_drv $VM_MODS_COMMON" ;;
	6.1) vm_prepare_61; MODS="$VM_MODS_COMMON" ;;
	*) vm_die "unknown kernel '$1' (6.12 or 6.1)" ;;
	esac
	# A suite's own modules (VM_EXTRA_MODS, set by its test script).
	MODS="$MODS${VM_EXTRA_MODS:+ $VM_EXTRA_MODS}"
}

# ---- initramfs ---------------------------------------------------------------

# Host programs copied into every guest (with their shared libraries).
VM_PROGS="/usr/bin/fio /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/blkdiscard /usr/bin/fallocate
	/usr/sbin/losetup /usr/sbin/blockdev"
VM_OPT_PROGS="/usr/sbin/nbd-client"

# _vm_copy_with_libs STAGE FILE...: FILE at its host path, plus its ldd closure.
_vm_copy_with_libs()
{
	local st=$1 f x
	shift
	for f in "$@"; do
		[ -e "$f" ] || continue
		for x in "$f" $(ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/lib/{print $1}'); do
			[ -e "$st$x" ] && continue
			mkdir -p "$st$(dirname "$x")"
			cp -L "$x" "$st$x"
		done
	done
	mkdir -p "$st/lib64"
	[ -e "$st/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$st/lib64/"
}

# _vm_modpath KDIR KVER NAME: the module's path relative to lib/modules/KVER
# (- and _ are equivalent), "builtin" if built in, empty if unknown.
_vm_modpath()
{
	local md=$1/lib/modules/$2 n=${3//-/_}
	awk -v n="$n" '{ p=$1; sub(/:$/, "", p); b=p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b);
		gsub(/-/, "_", b); if (b == n) { print p; exit } }' "$md/modules.dep" | head -n1 |
		grep . && return 0
	awk -v n="$n" '{ b=$1; sub(/.*\//, "", b); sub(/\.ko$/, "", b); gsub(/-/, "_", b);
		if (b == n) { print "builtin"; exit } }' "$md/modules.builtin" 2>/dev/null
}

# _vm_build_base OUT KDIR KVER MODS EXTRA_KO: the cached part of the initramfs
# (busybox, modules, host programs).
_vm_build_base()
{
	local out=$1 kdir=$2 kver=$3 mods=$4 extra_ko=$5
	local st md=$2/lib/modules/$3 m p d
	local -A seen=()
	local order=()

	st=$(mktemp -d "$VM_CACHE/.stage.XXXXXX")
	mkdir -p "$st"/{bin,sbin,proc,sys,dev,tmp,mnt,etc,run,var,lib/modules/$kver}
	cp /bin/busybox "$st/bin/busybox"
	ln -s busybox "$st/bin/sh"
	cp /etc/mke2fs.conf "$st/etc/" 2>/dev/null || true

	_add_mod()
	{
		local p=$1 d
		[ -n "${seen[$p]:-}" ] && return 0
		seen[$p]=1
		for d in $(awk -F': *' -v p="$p" '{ q=$1; sub(/:$/, "", q) } q == p { print $2 }' "$md/modules.dep"); do
			_add_mod "$d"
		done
		order+=("$p")
	}
	for m in $mods; do
		p=$(_vm_modpath "$kdir" "$kver" "$m")
		[ -n "$p" ] || { vm_log "module $m not found for $kver"; rm -rf "$st"; return 1; }
		[ "$p" = builtin ] && continue
		_add_mod "$p"
	done
	: > "$st/modules.load"
	for p in "${order[@]}"; do
		mkdir -p "$st/lib/modules/$kver/$(dirname "$p")"
		case $p in
		*.ko.xz)  xz -dc "$md/$p" > "$st/lib/modules/$kver/${p%.xz}"; p=${p%.xz} ;;
		*.ko.zst) zstd -qdc "$md/$p" > "$st/lib/modules/$kver/${p%.zst}"; p=${p%.zst} ;;
		*.ko.gz)  gzip -dc "$md/$p" > "$st/lib/modules/$kver/${p%.gz}"; p=${p%.gz} ;;
		*)        cp "$md/$p" "$st/lib/modules/$kver/$p" ;;
		esac
		# ublk_drv is left for modprobe (the driver-missing test).
		case $p in */ublk_drv.ko) ;; *) echo "$p" >> "$st/modules.load" ;; esac
	done
	for p in $extra_ko; do
		mkdir -p "$st/lib/modules/$kver/updates"
		cp "$p" "$st/lib/modules/$kver/updates/"
	done
	cp "$md"/modules.builtin* "$md"/modules.order "$st/lib/modules/$kver/" 2>/dev/null || true
	depmod -b "$st" "$kver" || { rm -rf "$st"; return 1; }

	_vm_copy_with_libs "$st" $VM_PROGS
	for p in $VM_OPT_PROGS; do
		[ -x "$p" ] && _vm_copy_with_libs "$st" "$p"
	done
	ln -sf mke2fs "$st/usr/sbin/mkfs.ext4"
	(cd "$st" && find . -print0 | cpio --null -o -H newc --quiet) | zstd -q -T0 -3 > "$out.tmp" &&
		mv "$out.tmp" "$out"
	local rc=$?
	rm -rf "$st"
	return $rc
}

# vm_initrd OUT SUITE: the initramfs for $KDIR/$KVER: the cached base (with
# $MODS) plus a fresh archive with diskstack, the guest scripts and SUITE.
vm_initrd()
{
	local out=$1 suite=$2 mods=$MODS key base st
	key=$(printf '%s\n' "$VM_BASE_VERSION" "$KVER" "$mods" "$EXTRA_KO" $VM_PROGS $VM_OPT_PROGS \
		"$(ls -l --time-style=+%s $VM_PROGS $VM_OPT_PROGS /bin/busybox 2>/dev/null)" |
		md5sum | cut -c1-12)
	base=$VM_CACHE/base-$KVER-$key.cpio.zst
	if [ ! -f "$base" ]; then
		vm_log "building the base initramfs for $KVER"
		vm_locked _vm_build_base "$base" "$KDIR" "$KVER" "$mods" "$EXTRA_KO" ||
			vm_die "cannot build the base initramfs"
		# Older bases of this kernel (other keys) are dead weight.
		find "$VM_CACHE" -maxdepth 1 -name "base-$KVER-*.cpio.zst" ! -name "${base##*/}" \
			-mmin +60 -delete 2>/dev/null
	fi
	st=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-stage.XXXXXX")
	mkdir -p "$st/vm" "$st/usr/bin"
	_vm_copy_with_libs "$st" "$DISKSTACK"
	mv "$st$DISKSTACK" "$st/usr/bin/diskstack"
	cp "$VM_DIR/init.sh" "$st/init"
	cp "$VM_DIR"/guest-*.sh "$st/vm/"
	chmod +x "$st/init" "$st"/vm/*.sh
	echo "$suite" > "$st/vm/suite"
	# A suite's own files: its test script may define vm_stage_extra STAGE.
	if declare -F vm_stage_extra >/dev/null; then
		vm_stage_extra "$st" || { rm -rf "$st"; vm_die "cannot stage the $suite suite's files"; }
	fi
	(cd "$st" && find . -print0 | cpio --null -o -H newc --quiet) | zstd -q -T0 -3 > "$out.run" ||
		{ rm -rf "$st"; vm_die "cannot build the initramfs"; }
	rm -rf "$st"
	cat "$base" "$out.run" > "$out" && rm -f "$out.run"
}

# vm_boot LOG TIMEOUT APPEND [qemu args...]: boots $KERNEL with the initramfs
# $INITRD under TCG; the console goes to LOG. Returns qemu's status (124 on
# timeout). no_timer_check: Linux checks at boot that the IO-APIC timer
# interrupt arrives within a few ticks; a TCG vCPU that the loaded host
# leaves off its cores for that long fails it, and the kernel panics with
# "IO-APIC + timer doesn't work!" (seen once in a full run at load 13). The
# parameter skips that check, as virtual machine images commonly do.
vm_boot()
{
	local log=$1 tmo=$2 append=$3 rc t0 t1
	shift 3
	t0=$(date +%s)
	timeout --kill-after=10 "$tmo" qemu-system-x86_64 -nographic -no-reboot -m "$VM_MEM" \
		-smp "$VM_SMP" -accel tcg -cpu max -kernel "$KERNEL" -initrd "$INITRD" \
		-append "console=ttyS0 panic=-1 loglevel=4 oops=panic no_timer_check $append ${DISKSTACK_VM_APPEND:-}" "$@" \
		</dev/null >"$log" 2>&1
	rc=$?
	t1=$(date +%s)
	vm_log "$(basename "$KERNEL"): qemu exit $rc after $((t1 - t0)) s (log: $log)"
	return $rc
}

# vm_prepare_initrd KERNEL SUITE: vm_prepare KERNEL, then the initramfs of
# the guest SUITE for it in INITRD=$work/initrd-KERNEL.img.
vm_prepare_initrd()
{
	vm_prepare "$1"
	INITRD=$work/initrd-$1.img
	vm_initrd "$INITRD" "$2"
}

# What the boots of a test came to (vm_tally, vm_exit).
vm_rc=0 vm_passed=0

# vm_tally R: counts one boot's result R (as vm_results returns it: 0,
# 77 skipped, else failed); returns 1 when the boot failed.
vm_tally()
{
	case $1 in
	0) vm_passed=1 ;;
	77) ;;
	*) vm_rc=1; return 1 ;;
	esac
}

# vm_exit: exits 1 when a boot failed, 77 when none passed, else 0.
vm_exit()
{
	[ $vm_rc -eq 0 ] && [ $vm_passed -eq 0 ] && exit 77
	exit $vm_rc
}

# vm_results LOG NAME: prints the guest's result lines; returns 0 when the
# guest finished with no FAIL, 77 when everything was skipped, 1 otherwise.
vm_results()
{
	local log=$1 name=$2 fails passes skips
	grep -a '^VMTEST:' "$log" | tr -d '\r' | sed "s#^VMTEST:#[$name]#"
	if grep -aqE 'Kernel panic|BUG:|Oops|WARNING: CPU|blocked for more than' "$log"; then
		echo "[$name] FAIL kernel trouble on the console:"
		grep -aE -A20 'Kernel panic|BUG:|Oops|WARNING: CPU|blocked for more than' "$log" | head -n 60
		return 1
	fi
	if ! grep -aq '^VMTEST: END' "$log"; then
		echo "[$name] FAIL the guest did not finish (timeout or crash); last console lines:"
		tail -n 40 "$log"
		return 1
	fi
	fails=$(grep -ac '^VMTEST: FAIL' "$log")
	passes=$(grep -ac '^VMTEST: PASS' "$log")
	skips=$(grep -ac '^VMTEST: SKIP' "$log")
	echo "[$name] $passes passed, $fails failed, $skips skipped"
	[ "$fails" -eq 0 ] || return 1
	[ "$passes" -gt 0 ] || return 77
	return 0
}

# vm_wait_pidfile FILE PID: 0 once the server PID has written its pid FILE
# (it is listening then), 1 when PID exits first or 10 s pass.
vm_wait_pidfile()
{
	local file=$1 pid=$2

	for _ in $(seq 100); do
		[ -s "$file" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# vm_watch_resize LOG: in the background, grows $work/disk.img by 32 MiB
# to 96 MiB (and the loop device $loopdev over it) once the guest's LOG
# says HOST-RESIZE; sets watch_pid.
vm_watch_resize()
{
	local log=$1
	(
		while ! grep -aq '^VMTEST: HOST-RESIZE' "$log" 2>/dev/null; do
			sleep 0.2
		done
		truncate -s 96M "$work/disk.img" && losetup -c "$loopdev" &&
			vm_log "grew the disk to 96 MiB"
	) &
	watch_pid=$!
}

# vm_stop_server: stops the server $srv_pid (if any) started in the
# background, waits for it and clears srv_pid.
vm_stop_server()
{
	[ -n "$srv_pid" ] || return 0
	kill "$srv_pid" 2>/dev/null
	wait "$srv_pid" 2>/dev/null
	srv_pid=
}

# vm_serve_retry WHAT LAUNCH: sets a random $port and runs the function
# LAUNCH, which starts the server in the background with pid file
# $work/srv.pid and its log appended to $work/serve.log; tries five ports
# (another program may hold one). Sets srv_pid; dies when none works.
vm_serve_retry()
{
	local what=$1 launch=$2 try

	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 30000))
		rm -f "$work/srv.pid"
		"$launch"
		srv_pid=$!
		vm_wait_pidfile "$work/srv.pid" "$srv_pid" && return 0
		vm_stop_server
	done
	cat "$work/serve.log" >&2
	vm_die "$what did not start"
}

# vm_watch_ctl LOG SOCK: in the background, runs `diskstack ctl -S SOCK
# ARGS` once for each "VMTEST: HOST-CTL ARGS" console line of the guest,
# in order (ARGS are split on blanks), logging each reply to
# $work/ctl.log; the guest waits for the effect. Sets ctl_watch_pid.
vm_watch_ctl()
{
	local log=$1 sock=$2
	(
		local handled=0 n args
		while :; do
			n=$(grep -ac '^VMTEST: HOST-CTL ' "$log" 2>/dev/null)
			while [ "$handled" -lt "${n:-0}" ]; do
				handled=$((handled + 1))
				args=$(grep -a '^VMTEST: HOST-CTL ' "$log" | sed -n "${handled}p" | tr -d '\r')
				args=${args#VMTEST: HOST-CTL }
				# shellcheck disable=SC2086
				if "$DISKSTACK" ctl -S "$sock" $args >>"$work/ctl.log" 2>&1; then
					vm_log "ctl $args: ok"
				else
					vm_log "ctl $args: failed ($(tail -n 1 "$work/ctl.log"))"
				fi
			done
			sleep 0.2
		done
	) &
	ctl_watch_pid=$!
}

# vm_host_requests LOG HANDLER: runs `HANDLER ACTION` (in this shell) for
# each "VMTEST: HOST ACTION" console line of the guest in LOG that no
# earlier call handled, in order. vm_host_handled counts the lines
# handled: set it to 0 before each boot, then call this in a loop while
# the guest runs.
vm_host_requests()
{
	local reqs
	mapfile -t reqs < <(grep -a '^VMTEST: HOST ' "$1" 2>/dev/null | tr -d '\r')
	while [ "$vm_host_handled" -lt ${#reqs[@]} ]; do
		vm_host_handled=$((vm_host_handled + 1))
		"$2" "${reqs[vm_host_handled - 1]#VMTEST: HOST }"
	done
}

# ---- benchmarks (tests/bench/bench-vhost.sh, bench-nvme-tcp.sh) ----------
# The guest's bench_rounds (guest-lib.sh) prints "VMTEST: HOST mark NAME
# JOB ROUND start|end" around each run and "VMTEST: RESULT NAME JOB ROUND
# IOPS REQUESTS" after it.

# vm_median: the median of the numbers on stdin ("-" when none).
vm_median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# vm_qemu_aux_ticks PID: QEMU's CPU time (clock ticks) outside its vCPU
# threads ("CPU n/TCG"): the process total (which keeps the time of exited
# worker threads) minus every vCPU thread's. The main loop there relays
# virtio kicks and runs slirp.
vm_qemu_aux_ticks()
{
	local total vcpu=0 t
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo -; return; }
	total=$(sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }')
	for t in /proc/"$1"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in
		CPU*) vcpu=$((vcpu + $(sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }'))) ;;
		esac
	done
	echo $((total - vcpu))
}

# vm_pid_ticks PID: utime + stime of process PID, in clock ticks ("-"
# when it is gone).
vm_pid_ticks() { [ -n "$1" ] && sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo -; }

# vm_bench_marks LOG MARKS BOOT_PID SAMPLE: until BOOT_PID (the vm_boot
# in the background) ends, answers every mark line of the console LOG by
# appending "NAME JOB ROUND start|end <what SAMPLE NAME prints>" to MARKS.
vm_bench_marks()
{
	local log=$1 marks=$2 boot=$3 sample=$4 handled=0 reqs
	while kill -0 "$boot" 2>/dev/null; do
		mapfile -t reqs < <(grep -a '^VMTEST: HOST mark ' "$log" 2>/dev/null | tr -d '\r')
		while [ $handled -lt ${#reqs[@]} ]; do
			set -- ${reqs[$handled]#VMTEST: HOST mark }
			handled=$((handled + 1))
			echo "$1 $2 $3 $4 $("$sample" "$1")" >> "$marks"
		done
		sleep 0.1
	done
}

# vm_bench_results LOG SUITE MARKS [SERVER_LOG]: once a bench boot has
# ended: unless the guest passed SUITE, prints its result lines and the
# console's tail (and SERVER_LOG's), and exits 1; else prints the guest's
# INFO lines and sets res to its RESULT lines (NAME JOB ROUND IOPS
# REQUESTS), kept in $work with MARKS when DISKSTACK_VM_KEEP=1.
vm_bench_results()
{
	if ! grep -aq "^VMTEST: PASS $2" "$1"; then
		grep -a '^VMTEST' "$1"
		tail -n 30 "$1"
		[ -n "${4:-}" ] && sed 's/^/    serve: /' "$4" | tail -n 20
		exit 1
	fi
	grep -a '^VMTEST: INFO' "$1" | tr -d '\r' | sed 's/^VMTEST: INFO //'
	res=$(grep -a '^VMTEST: RESULT' "$1" | tr -d '\r' | sed 's/^VMTEST: RESULT //')
	if [ "${DISKSTACK_VM_KEEP:-0}" = 1 ]; then
		echo "$res" > "$work/results"
		cp "$3" "$work/marks.txt"
	fi
}

# vm_bench_cpu RESULTS MARKS: for each result line "NAME JOB ROUND IOPS
# REQS", "NAME JOB ROUND A B" with A and B the µs of CPU per request of
# the two tick columns MARKS holds ("-" where a column was "-").
vm_bench_cpu()
{
	echo "$1" | awk -v hz="$(getconf CLK_TCK)" -v marks="$2" '
	BEGIN { while ((getline l < marks) > 0) { split(l, f, " "); k = f[1] " " f[2] " " f[3];
		if (f[4] == "start") { b0[k] = f[5]; a0[k] = f[6] } else { b1[k] = f[5]; a1[k] = f[6] } } }
	{ k = $1 " " $2 " " $3; n = $5
	  be = (b0[k] == "-" || b1[k] == "-" || n == 0) ? "-" : (b1[k] - b0[k]) * 1e6 / hz / n
	  aux = (a0[k] == "-" || a1[k] == "-" || n == 0) ? "-" : (a1[k] - a0[k]) * 1e6 / hz / n
	  print k, be, aux }'
}
