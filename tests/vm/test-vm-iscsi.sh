#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-iscsi.sh: the Linux iSCSI initiator (iscsi_tcp + open-iscsi's
# iscsistart) in QEMU guests running Debian's 6.12 and bookworm 6.1 kernels
# against `diskstack serve --iscsi` on the host (tests/vm/guest-iscsi.sh),
# reached as 10.0.2.2 through QEMU user networking. The host serves one
# target with
#   LUN 0  a disk: a loop device over a 64 MiB file, so that the host can
#          grow it while the guest runs (the file backend follows a device's
#          size from kernel uevents); a plain file if loop devices are
#          unavailable (the resize check then skips)
#   LUN 1  a DVD: an ISO made with genisoimage, served as file:<iso>,dvd
# The guest asks for the resize with a "VMTEST: HOST-RESIZE" console line;
# a watcher here grows the file and tells the loop driver (losetup -c).
# serve also runs its control socket (docs/ctl.md): the guest asks for
# LUNs to be added and removed with "VMTEST: HOST-CTL ..." lines
# (vm_watch_ctl; ds.ctl=1 tells the guest).
# DISKSTACK_VM_ISCSI_PEER=tgt runs the same guest against Debian's tgt
# instead (disk at LUN 1, DVD at LUN 2: tgt keeps LUN 0 for itself), to
# tell the guest test's own faults from the target's.
# open-iscsi is not installed on the host (it would pull udev and systemd
# upgrades): its .debs are fetched with apt-get download into the VM cache
# and unpacked into the initramfs, with sg3-utils for sg_persist/sg_start.
. "$(dirname "$0")/vm-lib.sh"

PEER=${DISKSTACK_VM_ISCSI_PEER:-diskstack}
if [ "$PEER" = tgt ]; then
	. "$VM_TOP/tests/bench/tgt-functions.sh"
	command -v tgtd >/dev/null 2>&1 || vm_skip "tgtd is missing"
	DISK_LUN=1 DVD_LUN=2
else
	# Not `| grep -q`: under pipefail, grep's early exit gives serve a
	# SIGPIPE once the help is longer than a pipe buffer.
	case $("$DISKSTACK" serve --help 2>&1) in
	*--iscsi*) ;;
	*) vm_skip "this diskstack has no iSCSI target (serve --iscsi)" ;;
	esac
	DISK_LUN=0 DVD_LUN=1
fi
vm_requires
for t in genisoimage sg_persist sg_start md5sum; do
	command -v "$t" >/dev/null 2>&1 || vm_skip "$t is missing (tools/quickstart.sh deps)"
done

VM_EXTRA_MODS="iscsi_tcp sd_mod sr_mod sg isofs"
VM_OPENISCSI_DEBS="open-iscsi libopeniscsiusr libisns0"
TARGET=iqn.2024-01.org.diskstack:vm

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-iscsi.XXXXXX")
srv_pid= loopdev= watch_pid= ctl_watch_pid=
cleanup()
{
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	[ -n "$ctl_watch_pid" ] && kill "$ctl_watch_pid" 2>/dev/null
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	[ "$PEER" = tgt ] && tgt_stop
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# The unpacked open-iscsi tree in the cache ($VM_CACHE/open-iscsi-<versions>).
_vm_openiscsi()
{
	local p deb debs=() dir tmp
	for p in $VM_OPENISCSI_DEBS; do
		deb=$(vm_fetch "$p") || { vm_log "apt-get download $p failed"; return 1; }
		debs+=("$deb")
	done
	dir=$VM_CACHE/open-iscsi-$(printf '%s\n' "${debs[@]##*/}" | md5sum | cut -c1-12)
	if [ ! -f "$dir/.done" ]; then
		tmp=$(mktemp -d "$VM_CACHE/.unpack.XXXXXX")
		for deb in "${debs[@]}"; do
			dpkg-deb -x "$deb" "$tmp" || { rm -rf "$tmp"; return 1; }
		done
		rm -rf "$dir"
		mv "$tmp" "$dir" && touch "$dir/.done"
	fi
	echo "$dir" > "$VM_CACHE/.openiscsi"
}
vm_locked _vm_openiscsi || vm_die "cannot fetch open-iscsi (apt-get download $VM_OPENISCSI_DEBS)"
OPENISCSI=$(cat "$VM_CACHE/.openiscsi")

# Called by vm_initrd: open-iscsi (its libraries at the exact names the
# binaries ask for, the rest of its ldd closure from the host), sg3-utils,
# and the ISO's checksum for the guest to compare with.
vm_stage_extra()
{
	local st=$1 lib=$OPENISCSI/usr/lib/x86_64-linux-gnu b
	mkdir -p "$st/usr/lib/x86_64-linux-gnu" "$st/sbin"
	cp -a "$lib"/libopeniscsiusr.so* "$lib"/libisns.so* "$st/usr/lib/x86_64-linux-gnu/" || return 1
	for b in iscsistart iscsiadm; do
		cp "$OPENISCSI/sbin/$b" "$st/sbin/" || return 1
		LD_LIBRARY_PATH=$lib _vm_copy_with_libs "$st" "$OPENISCSI/sbin/$b"
	done
	rm -rf "${st:?}$OPENISCSI"
	_vm_copy_with_libs "$st" "$(command -v sg_persist)" "$(command -v sg_start)" \
		"$(command -v sg_turs)"
	cp "$work/dvd.md5" "$st/vm/dvd.md5"
}

# The DVD: a small tree with a random file and a text file.
mkdir -p "$work/iso"
head -c 3000000 /dev/urandom > "$work/iso/random.bin"
echo "diskstack DVD" > "$work/iso/hello.txt"
genisoimage -quiet -R -J -V DSTEST -o "$work/dvd.iso" "$work/iso" || vm_die "genisoimage failed"
(cd "$work/iso" && md5sum random.bin hello.txt) > "$work/dvd.md5"

# start_server: a fresh 64 MiB disk (through a loop device when possible)
# and the DVD; sets port, srv_pid, loopdev.
start_server()
{
	local disk
	rm -f "$work/disk.img"
	truncate -s 64M "$work/disk.img"
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	loopdev=$(losetup -f --show "$work/disk.img" 2>/dev/null) || loopdev=
	disk=${loopdev:-$work/disk.img}
	if [ "$PEER" = tgt ]; then
		port=$((20000 + RANDOM % 30000))
		tgt_start "$work" "$port" && tgt_lun 1 "$TARGET" 1 "$disk" &&
			tgt_adm --mode logicalunit --op new --tid 1 --lun 2 --backing-store "$work/dvd.iso" \
				--bstype rdwr --device-type cd || vm_die "tgtd did not start"
		return 0
	fi
	vm_serve_retry "diskstack serve --iscsi" launch_server
}

# launch_server: diskstack serve --iscsi on $port, LUN 0 on $disk.
launch_server()
{
	rm -f "$work/ctl.sock" "$work/nbd.sock"
	"$DISKSTACK" serve -P "$work/srv.pid" --iscsi "127.0.0.1:$port" --target "$TARGET" \
		--lun "0=file:$disk" --lun "1=file:$work/dvd.iso,dvd" \
		-U "$work/nbd.sock" --control "$work/ctl.sock" 2>>"$work/serve.log" &
}

stop_server()
{
	[ "$PEER" = tgt ] && { tgt_stop; return; }
	vm_stop_server
}

for kernel in ${DISKSTACK_VM_KERNELS:-6.12 6.1}; do
	vm_prepare_initrd "$kernel" iscsi
	start_server
	log=$work/console-$kernel-iscsi.log
	: > "$log"
	resize=0
	if [ -n "$loopdev" ]; then
		resize=1
		vm_watch_resize "$log"
	fi
	ctl=0
	if [ "$PEER" = diskstack ]; then
		ctl=1
		vm_watch_ctl "$log" "$work/ctl.sock"
	fi
	vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-420}" "ds.net=1 ds.port=$port ds.target=$TARGET ds.resize=$resize ds.luns=$DISK_LUN,$DVD_LUN ds.ctl=$ctl" \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	watch_pid=
	[ -n "$ctl_watch_pid" ] && kill "$ctl_watch_pid" 2>/dev/null
	ctl_watch_pid=
	stop_server
	r=0
	name=$kernel/iscsi
	[ "$PEER" = tgt ] && name=$name-tgt
	vm_results "$log" "$name" || r=$?
	vm_tally $r || { [ -f "$work/serve.log" ] && sed 's/^/    serve: /' "$work/serve.log" | tail -n 20; }
done
vm_exit
