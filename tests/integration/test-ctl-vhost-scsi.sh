#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-vhost-scsi.sh: vhost-user-scsi devices managed through serve's
# control socket (docs/ctl.md, "vhost-user-scsi devices"): vhost-scsi-add
# makes a device on a socket of its own (QEMU, when installed, realizes a
# vhost-user-scsi-pci on it), LUNs are added to and removed from it and
# from the command line's --vhost-user-scsi device, the LUNs appear in
# export-list, stats, disk-info and disk-resize as SOCKET/LUN,
# export-add/-remove frontend=vhost-user-scsi are the same calls, the
# error cases answer their codes, and vhost-scsi-del (and the end of
# serve) removes the socket. What the guest sees runs in the VM suite
# (tests/vm/guest-vhost-scsi.sh); the event queue's REMOVED event in
# tests/unit/test-vhost-scsi.c.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
cd "$tmpdir"

cl=$tmpdir/cl.sock
vs=$tmpdir/v.sock
serve s -U "$tmpdir/nbd.sock" --control "$ctl" -e a=mem:8M --vhost-user-scsi "$cl" mem:4M

expect_exit 0 c rpc-get-methods
json_check "$tmpdir/stdout" 'all(m in r for m in ["vhost-scsi-add", "vhost-scsi-del",
  "vhost-scsi-lun-add", "vhost-scsi-lun-remove"])'
expect_exit 0 c server-info
json_check "$tmpdir/stdout" '"vhost-user-scsi" in r["frontends"]'
# The command line's device: its LUN 0 is the positional SPEC.
expect_exit 0 c export-list "name=$cl"
json_check "$tmpdir/stdout" '[(e["frontend"], e["lun"], e["spec"], e["size"]) for e in r] == [("vhost-user-scsi", 0, "mem:4M", 4 << 20)]'

# A device of its own with a disk and a DVD.
expect_exit 0 c vhost-scsi-add "socket=$vs" 'luns={"0":"mem:8M","1":"mem:2M,dvd"}' queues=2
json_check "$tmpdir/stdout" "r['frontend'] == 'vhost-user-scsi' and r['name'] == '$vs' and [(l['lun'], l['size'], l['read_only']) for l in r['luns']] == [(0, 8 << 20, False), (1, 2 << 20, True)]"
[ -S "$vs" ] || fail "no socket at $vs"
expect_exit 0 c server-info
json_check "$tmpdir/stdout" 'r["frontends"].count("vhost-user-scsi") == 1'

# Each socket its own target name (LUNs without a disk id take their
# WWN from it): paths that reduce to the same characters ('_' and '-',
# upper and lower case) get a hash of the path; a path of only
# [a-z0-9./] keeps the plain name. A device without LUNs is listed once.
# (Relative paths: serve runs in $tmpdir, whose name has '-' and capitals.)
tn=names
mkdir "$tn"
for n in vm_1 vm-1 VM1; do
	expect_exit 0 c vhost-scsi-add "socket=$tn/$n.sock"
	json_check "$tmpdir/stdout" "r['luns'] == [] and r['target'].startswith('iqn.2026-12.org.diskstack:vhost.') and '.h' in r['target']"
	cp "$tmpdir/stdout" "$tn/$n.json"
done
expect_exit 0 c vhost-scsi-add "socket=$tn/vm1.sock"
json_check "$tmpdir/stdout" "r['target'] == 'iqn.2026-12.org.diskstack:vhost.names-vm1.sock'"
cp "$tmpdir/stdout" "$tn/vm1.json"
"$PY" -I -c 'import json, sys; t = [json.load(open(f))["target"] for f in sys.argv[1:]]; sys.exit(len(set(t)) != len(t))' \
	"$tn/vm_1.json" "$tn/vm-1.json" "$tn/VM1.json" "$tn/vm1.json" || fail "two sockets got the same target name"
expect_exit 0 c export-list "name=$tn/vm_1.sock"
json_check "$tmpdir/stdout" "len(r) == 1 and r[0]['lun'] is None and r[0]['target'] == json.load(open('$tn/vm_1.json'))['target']"
for n in vm_1 vm-1 VM1 vm1; do
	expect_exit 0 c vhost-scsi-del "socket=$tn/$n.sock"
done

# Errors: a socket served (by this device, by the command line's), a
# bad spec (nothing is made), a bad queue count, unknown sockets.
expect_exit 1 c vhost-scsi-add "socket=$vs" 'luns={"0":"mem:1M"}'
expect_stderr "error -32002"
expect_exit 1 c vhost-scsi-add "socket=$cl"
expect_stderr "error -32002"
expect_exit 1 c vhost-scsi-add "socket=$tmpdir/bad.sock" 'luns={"0":"mem:1M","1":"mem:bogus"}'
expect_stderr "error -32003"
[ ! -e "$tmpdir/bad.sock" ] || fail "a device with a bad spec left its socket"
expect_exit 1 c vhost-scsi-add "socket=$tmpdir/bad.sock" queues=63
expect_stderr "error -32602"
expect_exit 1 c vhost-scsi-add "socket=$tmpdir/bad.sock" 'luns={"256":"mem:1M"}'
expect_stderr "error -32602"
expect_exit 1 c vhost-scsi-lun-add "socket=$tmpdir/none.sock" lun=1 spec=mem:1M
expect_stderr "error -32001"
expect_exit 1 c vhost-scsi-lun-remove "socket=$tmpdir/none.sock" lun=1
expect_stderr "error -32001"
expect_exit 1 c vhost-scsi-del "socket=$tmpdir/none.sock"
expect_stderr "error -32001"

if command -v qemu-system-x86_64 >/dev/null 2>&1; then
	# Realizing vhost-user-scsi-pci takes the whole feature handshake.
	printf '{"execute":"qmp_capabilities"}\n{"execute":"query-pci"}\n{"execute":"quit"}\n' |
		timeout 60 qemu-system-x86_64 -M q35,memory-backend=m -object memory-backend-memfd,id=m,size=64M,share=on \
			-chardev "socket,id=c0,path=$vs" -device vhost-user-scsi-pci,chardev=c0,id=vus,num_queues=2 \
			-S -display none -nodefaults -qmp stdio > qmp.out 2> qmp.err ||
		{ cat qmp.err; fail "QEMU could not realize vhost-user-scsi-pci on the new socket"; }
	grep -q '"qdev_id": "vus"' qmp.out || { cat qmp.out; fail "QEMU lists no vhost-user-scsi device"; }
fi

# LUNs on the running device: added, refused twice, listed, removed.
expect_exit 0 c vhost-scsi-lun-add "socket=$vs" lun=3 spec=mem:1M
json_check "$tmpdir/stdout" "r == {'socket': '$vs', 'lun': 3, 'type': 'layered', 'read_only': False, 'size': 1 << 20, 'sector_size': 512}"
expect_exit 1 c vhost-scsi-lun-add "socket=$vs" lun=3 spec=mem:1M
expect_stderr "error -32002"
expect_exit 1 c vhost-scsi-lun-add "socket=$vs" lun=4 spec=mem:bogus
expect_stderr "error -32003"
expect_exit 1 c vhost-scsi-lun-add "socket=$vs" lun=256 spec=mem:1M
expect_stderr "error -32602"
expect_exit 0 c export-list "name=$vs"
json_check "$tmpdir/stdout" '[(e["lun"], e["spec"]) for e in r] == [(0, "mem:8M"), (1, "mem:2M,dvd"), (3, "mem:1M")]'

# SOCKET/LUN names the disk for stats, disk-info and disk-resize.
expect_exit 0 c stats-enable
json_check "$tmpdir/stdout" "'$vs/3' in r['enabled'] and '$cl/0' in r['enabled']"
expect_exit 0 c stats "target=$vs/3"
json_check "$tmpdir/stdout" "[(e['frontend'], e['name']) for e in r['exports']] == [('vhost-user-scsi', '$vs/3')] and 'read' in r['exports'][0]"
expect_exit 0 c disk-info "target=$vs/3"
json_check "$tmpdir/stdout" 'r["size_bytes"] == 1 << 20'
expect_exit 0 c disk-resize "target=$vs/3" size=2097152
expect_exit 0 c export-list "name=$vs"
json_check "$tmpdir/stdout" '[e["size"] for e in r if e["lun"] == 3] == [2 << 20]'

expect_exit 0 c vhost-scsi-lun-remove "socket=$vs" lun=3
json_check "$tmpdir/stdout" 'r == {}'
expect_exit 1 c vhost-scsi-lun-remove "socket=$vs" lun=3
expect_stderr "error -32001"
expect_exit 1 c disk-info "target=$vs/3"
expect_stderr "error -32001"
# The number is free again at once.
expect_exit 0 c vhost-scsi-lun-add "socket=$vs" lun=3 spec=mem:1M

# The command line's device takes LUNs too, and gives them back.
expect_exit 0 c vhost-scsi-lun-add "socket=$cl" lun=2 spec=mem:1M,removable
expect_exit 0 c export-list "name=$cl"
json_check "$tmpdir/stdout" '[e["lun"] for e in r] == [0, 2]'
expect_exit 0 c vhost-scsi-lun-remove "socket=$cl" lun=2 timeout_ms=5000
json_check "$tmpdir/stdout" 'r == {}'

# vhost-scsi-del: the socket goes; the name is unknown afterwards.
expect_exit 0 c vhost-scsi-del "socket=$vs"
json_check "$tmpdir/stdout" 'r == {}'
[ ! -e "$vs" ] || fail "the socket remains after vhost-scsi-del"
expect_exit 1 c vhost-scsi-del "socket=$vs"
expect_stderr "error -32001"
expect_exit 1 c export-list "name=$vs"
expect_stderr "error -32001"

# export-add/-remove frontend=vhost-user-scsi: the same calls.
expect_exit 0 c export-add frontend=vhost-user-scsi "name=$vs" 'luns={"2":"mem:1M"}'
json_check "$tmpdir/stdout" "r['name'] == '$vs' and [l['lun'] for l in r['luns']] == [2]"
expect_exit 0 c export-remove frontend=vhost-user-scsi "name=$vs"
json_check "$tmpdir/stdout" 'r == {"flushed": True}'
[ ! -e "$vs" ] || fail "the socket remains after export-remove"
expect_exit 1 c export-add frontend=vhost-user-nope "name=$vs"
expect_stderr "error -32602"

# One left running when serve stops goes with it, its disks flushed.
expect_exit 0 c vhost-scsi-add "socket=$vs" 'luns={"0":"file:disk.raw;create=1M"}'
serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
[ ! -e "$vs" ] || fail "the vhost-user-scsi socket remains after serve stopped"
[ ! -e "$cl" ] || fail "the command line's socket remains after serve stopped"

# A read-only serve refuses writable LUNs.
serve r -r -U "$tmpdir/nbd2.sock" --control "$tmpdir/ctl2.sock" -e a=mem:1M
expect_exit 1 "$DISKSTACK" ctl -S "$tmpdir/ctl2.sock" vhost-scsi-add "socket=$vs" read_only=false
expect_stderr "error -32602"
expect_exit 0 "$DISKSTACK" ctl -S "$tmpdir/ctl2.sock" vhost-scsi-add "socket=$vs" 'luns={"0":"mem:1M"}'
json_check "$tmpdir/stdout" 'r["luns"][0]["read_only"] is True'
serve_stop r
[ "$serve_status" = 0 ] || { cat "$tmpdir/r.log"; fail "serve exited with $serve_status"; }
exit 0
