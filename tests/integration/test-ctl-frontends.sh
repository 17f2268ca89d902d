#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-frontends.sh: the control socket's methods for serve's other
# frontends (docs/ctl.md, "Frontends"): iSCSI LUNs added and removed on a
# running target and seen by libiscsi's initiator tools, a LUN removed
# while QEMU writes to it (the writes fail cleanly, the server lives on),
# NVMe/TCP namespaces added and removed, vhost-user-blk devices made on
# an export (QEMU realizes one), export-list showing every frontend with
# its type, server-info's frontends, and ublk-add refused
# with the OS error when the kernel has no ublk driver (the real ublk
# checks run in the VM suite: tests/vm/guest-ublk.sh).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires iscsi-ls iscsi-readcapacity16 qemu-io stdbuf mkfifo
requires_nbd_python
cd "$tmpdir"


iport=$(free_port)
nport=$(free_port)
serve s -U "$tmpdir/nbd.sock" --control "$ctl" -e a=mem:8M \
	--iscsi "127.0.0.1:$iport" --lun 0=mem:4M --nvme-tcp "127.0.0.1:$nport" --ns 1=mem:4M

expect_exit 0 c rpc-get-methods
json_check "$tmpdir/stdout" 'all(m in r for m in ["ublk-add", "ublk-del", "ublk-list",
  "iscsi-lun-add", "iscsi-lun-remove", "nvme-ns-add", "nvme-ns-remove"])'
expect_exit 0 c server-info
json_check "$tmpdir/stdout" 'r["frontends"] == ["nbd", "iscsi", "nvme-tcp"]'

# export-list: every frontend, with its type.
expect_exit 0 c export-list
json_check "$tmpdir/stdout" '[(e["frontend"], e["name"]) for e in r][0] == ("nbd", "a")'
json_check "$tmpdir/stdout" '[(e.get("lun"), e["size"]) for e in r if e["frontend"] == "iscsi"] == [(0, 4 << 20)]'
json_check "$tmpdir/stdout" '[(e["nsid"], e["spec"]) for e in r if e["frontend"] == "nvme-tcp"] == [(1, "mem:4M")]'
T=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "iscsi"][0])' "$tmpdir/stdout")
NQN=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "nvme-tcp"][0])' "$tmpdir/stdout")
expect_exit 0 c export-list "name=$T"
json_check "$tmpdir/stdout" 'len(r) == 1 and r[0]["lun"] == 0'

# iSCSI: a LUN added on the running target is there for the next login.
expect_exit 0 c iscsi-lun-add lun=2 spec=mem:8M
json_check "$tmpdir/stdout" "r == {'target': '$T', 'lun': 2, 'type': 'layered', 'read_only': False, 'size': 8 << 20, 'sector_size': 512}"
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$iport/$T/2" > cap || fail "READ CAPACITY of the new LUN"
grep -q "Total size:8388608" cap || { cat cap; fail "LUN 2 is not 8 MiB"; }
timeout 30 iscsi-ls -s "iscsi://127.0.0.1:$iport" > ls || fail "iscsi-ls"
grep -q "^Lun:2 " ls || { cat ls; fail "REPORT LUNS lacks LUN 2"; }
expect_exit 1 c iscsi-lun-add lun=2 spec=mem:1M
expect_stderr "error -32002"
expect_exit 1 c iscsi-lun-add lun=3 spec=mem:bogus
expect_stderr "error -32003"
expect_exit 1 c iscsi-lun-add lun=256 spec=mem:1M
expect_stderr "error -32602"
expect_exit 1 c iscsi-lun-add target=iqn.2026-12.org.example:none lun=1 spec=mem:1M
expect_stderr "error -32001"
expect_exit 0 c iscsi-lun-remove lun=2
json_check "$tmpdir/stdout" 'r == {}'
if timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$iport/$T/2" >/dev/null 2>&1; then
	fail "the removed LUN still answers"
fi
expect_exit 1 c iscsi-lun-remove lun=2
expect_stderr "error -32001"

# A LUN removed while QEMU writes to it: qemu-io reads its commands from
# a FIFO, logs in (its first read answers), queues 16 writes on a delay:
# disk that keeps them in flight, and the LUN is removed under them. The
# commands in flight finish, the next ones fail with LOGICAL UNIT NOT
# SUPPORTED, QEMU ends, the server and the other LUN carry on. (How many
# land on which side is not asserted.)
expect_exit 0 c iscsi-lun-add lun=5 'spec=delay:50ms:mem:16M'
mkfifo qfifo
(timeout 60 stdbuf -oL qemu-io -f raw "iscsi://127.0.0.1:$iport/$T/5" < qfifo > qio 2>&1
 echo "exit $?" >> qio) &
qpid=$!
exec 7>qfifo
echo "read 0 512" >&7
i=0
until grep -q "read 512/512" qio; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat qio; fail "qemu-io did not log in"; }
	sleep 0.1
done
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
	echo "aio_write -P 0x5a ${i}M 1M" >&7
done
expect_exit 0 c iscsi-lun-remove lun=5
json_check "$tmpdir/stdout" 'r == {}'
echo aio_flush >&7
echo quit >&7
exec 7>&-
wait $qpid
grep -q "^exit 0" qio || { cat qio; fail "qemu-io did not end cleanly after the LUN went away"; }
kill -0 "$s_pid" || fail "serve died when the LUN was removed under I/O"
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$iport/$T/0" > cap || fail "LUN 0 after the removal"
grep -q "Total size:4194304" cap || { cat cap; fail "LUN 0 changed"; }

# NVMe/TCP namespaces.
expect_exit 0 c nvme-ns-add nsid=2 spec=mem:2M
json_check "$tmpdir/stdout" "r['nqn'] == '$NQN' and r['nsid'] == 2 and r['size'] == 2 << 20"
expect_exit 0 c export-list "name=$NQN"
json_check "$tmpdir/stdout" 'sorted(e["nsid"] for e in r) == [1, 2]'
expect_exit 1 c nvme-ns-add nsid=2 spec=mem:2M
expect_stderr "error -32002"
expect_exit 1 c nvme-ns-add nsid=0 spec=mem:2M
expect_stderr "error -32602"
expect_exit 0 c nvme-ns-remove nsid=2
json_check "$tmpdir/stdout" 'r == {}'
expect_exit 1 c nvme-ns-remove nsid=2
expect_stderr "error -32001"

# ublk: without the driver, a clear refusal with the OS error.
expect_exit 0 c ublk-list
json_check "$tmpdir/stdout" 'r == []'
expect_exit 1 c ublk-add export=nosuch
expect_stderr "error -32001"
if [ ! -e /dev/ublk-control ] && ! grep -q '^ublk_drv ' /proc/modules 2>/dev/null; then
	expect_exit 1 c ublk-add export=a
	expect_stderr "error -32000"
	expect_stderr '"errname":"ENOENT"'
	expect_stderr "ublk driver is not available"
fi
expect_exit 1 c ublk-del id=7
expect_stderr "error -32001"

# vhost-user-blk: a device of its own socket over export a; QEMU (when
# installed) realizes a vhost-user-blk-pci on it, which takes the whole
# feature/config handshake; deleted, the socket goes.
vs=$tmpdir/vhost.sock
expect_exit 0 c vhost-blk-add export=a "socket=$vs" read_only=true
json_check "$tmpdir/stdout" "r['frontend'] == 'vhost-user-blk' and r['name'] == '$vs' and r['read_only'] is True and r['size'] == 8 << 20"
[ -S "$vs" ] || fail "no socket at $vs"
expect_exit 1 c vhost-blk-add export=a "socket=$vs"
expect_stderr "error -32002"
expect_exit 1 c vhost-blk-add export=nosuch "socket=$tmpdir/other.sock"
expect_stderr "error -32001"
expect_exit 0 c export-list "name=$vs"
json_check "$tmpdir/stdout" 'len(r) == 1 and r[0]["export"] == "a"'
expect_exit 0 c server-info
json_check "$tmpdir/stdout" '"vhost-user-blk" in r["frontends"]'
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
	printf '{"execute":"qmp_capabilities"}\n{"execute":"query-pci"}\n{"execute":"quit"}\n' |
		timeout 60 qemu-system-x86_64 -M q35,memory-backend=m -object memory-backend-memfd,id=m,size=64M,share=on \
			-chardev "socket,id=c0,path=$vs" -device vhost-user-blk-pci,chardev=c0,id=vub \
			-S -display none -nodefaults -qmp stdio > qmp.out 2> qmp.err ||
		{ cat qmp.err; fail "QEMU could not realize vhost-user-blk-pci on the new socket"; }
	grep -q '"qdev_id": "vub"' qmp.out || { cat qmp.out; fail "QEMU lists no vhost-user-blk device"; }
fi
expect_exit 0 c vhost-blk-del "socket=$vs"
[ ! -e "$vs" ] || fail "the socket remains after vhost-blk-del"
expect_exit 1 c vhost-blk-del "socket=$vs"
expect_stderr "error -32001"
# From a spec instead of an export (no NBD export needed): the
# export-add/-remove form too; the disk is the device's own, flushed when
# it goes; one of export and spec, not both, not neither.
vs2=$tmpdir/vhost2.sock
expect_exit 1 c vhost-blk-add export=a spec=mem:1M "socket=$vs2"
expect_stderr "error -32602"
expect_exit 1 c vhost-blk-add "socket=$vs2"
expect_stderr "error -32602"
expect_exit 1 c export-add frontend=vhost-user-blk "name=$vs2" spec=nosuch:x
expect_stderr "error -32003"
[ ! -e "$vs2" ] || fail "a failed vhost-user-blk add left its socket"
truncate -s 2M vb.img
expect_exit 0 c export-add frontend=vhost-user-blk "name=$vs2" spec=file:vb.img queues=2
json_check "$tmpdir/stdout" "r['name'] == '$vs2' and r['spec'] == 'file:vb.img' and r['size'] == 2 << 20 and r['read_only'] is False"
expect_exit 0 c export-list "name=$vs2"
json_check "$tmpdir/stdout" 'len(r) == 1 and r[0]["spec"] == "file:vb.img" and "export" not in r[0]'
expect_exit 0 c disk-resize "target=$vs2" size=4194304
[ "$(stat -c %s vb.img)" = 4194304 ] || fail "disk-resize did not grow the device's file"
expect_exit 0 c export-remove frontend=vhost-user-blk "name=$vs2"
json_check "$tmpdir/stdout" 'r["flushed"] is True'
[ ! -e "$vs2" ] || fail "the socket remains after export-remove"
expect_exit 1 c export-remove frontend=vhost-user-blk "name=$vs2"
expect_stderr "error -32001"
# One left running when serve stops goes with it.
expect_exit 0 c vhost-blk-add export=a "socket=$vs"

serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
[ ! -e "$vs" ] || fail "the vhost-user socket remains after serve stopped"

# Without --iscsi or --nvme-tcp the methods are not supported.
serve n -U "$tmpdir/nbd2.sock" --control "$tmpdir/ctl2.sock" -e a=mem:1M
expect_exit 1 "$DISKSTACK" ctl -S "$tmpdir/ctl2.sock" iscsi-lun-add lun=1 spec=mem:1M
expect_stderr "error -32004"
expect_exit 1 "$DISKSTACK" ctl -S "$tmpdir/ctl2.sock" nvme-ns-remove nsid=1
expect_stderr "error -32004"
serve_stop n
[ "$serve_status" = 0 ] || { cat "$tmpdir/n.log"; fail "serve exited with $serve_status"; }
exit 0
