#!/bin/sh
# SPDX-License-Identifier: MIT
# test-iscsi-tools.sh: `diskstack serve --iscsi` against real initiators:
# libiscsi's iscsi-ls (SendTargets discovery with an advertised portal),
# iscsi-inq and iscsi-readcapacity16 on two targets and LUNs, QEMU's
# iscsi driver writing and comparing 4 MiB (immediate, unsolicited and
# R2T-solicited data, Data-In sequences) with and without a header
# digest, a ,dvd LUN read back byte for byte, the default target of a
# positional SPEC, and a clean SIGTERM.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires iscsi-ls iscsi-inq iscsi-readcapacity16 qemu-img qemu-io

T1=iqn.2026-12.org.diskstack:one
T2=iqn.2026-12.org.diskstack:two
port=$(free_port)
head -c 2097152 /dev/urandom > "$tmpdir/dvd.iso"
serve s --iscsi "$port" --iscsi-portal 192.0.2.1:3260 \
	--target $T1 --lun 0=mem:16M --lun 3=mem:8M --target $T2 --lun 0=mem:4M \
	--lun 1="file:$tmpdir/dvd.iso,dvd"

timeout 30 iscsi-ls "iscsi://127.0.0.1:$port" > "$tmpdir/ls" || fail "iscsi-ls failed"
grep -q "Target:$T1 Portal:192.0.2.1:3260,1" "$tmpdir/ls" || { cat "$tmpdir/ls"; fail "discovery lacks $T1"; }
grep -q "Target:$T2 Portal:192.0.2.1:3260,1" "$tmpdir/ls" || { cat "$tmpdir/ls"; fail "discovery lacks $T2"; }

timeout 30 iscsi-inq "iscsi://127.0.0.1:$port/$T1/3" > "$tmpdir/inq" || fail "iscsi-inq failed"
grep -q "Peripheral Device Type:DIRECT_ACCESS" "$tmpdir/inq" || { cat "$tmpdir/inq"; fail "INQUIRY"; }
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$port/$T1/3" > "$tmpdir/cap" || fail "READ CAPACITY(16)"
grep -q "Total size:8388608" "$tmpdir/cap" || { cat "$tmpdir/cap"; fail "LUN 3 is not 8 MiB"; }
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$port/$T2/0" > "$tmpdir/cap" || fail "READ CAPACITY(16)"
grep -q "Total size:4194304" "$tmpdir/cap" || { cat "$tmpdir/cap"; fail "target two is not 4 MiB"; }
if timeout 30 iscsi-inq "iscsi://127.0.0.1:$port/iqn.2026-12.org.diskstack:none/0" >/dev/null 2>&1; then
	fail "a login to an unknown target succeeded"
fi
grep -q "refused (status 2/3)" "$tmpdir/s.log" || { cat "$tmpdir/s.log"; fail "no 'target not found' log line"; }

head -c 4194304 /dev/urandom > "$tmpdir/pat"
U="iscsi://127.0.0.1:$port/$T1/0"
timeout 60 qemu-img convert -n -f raw -O raw "$tmpdir/pat" "$U" || fail "qemu-img convert to $U"
timeout 60 qemu-img compare -f raw -F raw "$tmpdir/pat" "$U" > "$tmpdir/cmp" 2>&1 ||
	{ cat "$tmpdir/cmp"; fail "the LUN does not read back what was written"; }
timeout 60 qemu-io --image-opts \
	"driver=iscsi,transport=tcp,portal=127.0.0.1:$port,target=$T1,lun=0,header-digest=crc32c" \
	-c 'write -P 0x5a 1M 3M' -c 'read -P 0x5a 1M 3M' -c 'read -P 0 8M 1M' > "$tmpdir/io" 2>&1 ||
	{ cat "$tmpdir/io"; fail "qemu-io with a header digest"; }
if grep -q -i "fail\|error" "$tmpdir/io"; then cat "$tmpdir/io"; fail "qemu-io pattern mismatch"; fi

# A ",dvd" LUN: an MMC device that reads back the image byte for byte.
timeout 30 iscsi-inq "iscsi://127.0.0.1:$port/$T2/1" > "$tmpdir/inq" || fail "iscsi-inq (DVD)"
grep -q "Peripheral Device Type:MMC" "$tmpdir/inq" || { cat "$tmpdir/inq"; fail "LUN 1 is not a DVD"; }
timeout 60 qemu-img convert -f raw -O raw "iscsi://127.0.0.1:$port/$T2/1" "$tmpdir/dvd.back" ||
	fail "qemu-img convert from the DVD LUN"
cmp "$tmpdir/dvd.iso" "$tmpdir/dvd.back" || fail "the DVD LUN does not read back the image"

serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }

# A positional SPEC is LUN 0 of the default target (iSCSI only: no NBD).
port=$(free_port)
serve d --iscsi "127.0.0.1:$port" mem:2M
timeout 30 iscsi-ls "iscsi://127.0.0.1:$port" > "$tmpdir/ls" || fail "iscsi-ls (default target)"
def=$(sed -n 's/^Target:\(iqn\.2026-12\.org\.diskstack:[^ ]*\) Portal:127\.0\.0\.1:'"$port"',1$/\1/p' "$tmpdir/ls")
[ -n "$def" ] || { cat "$tmpdir/ls"; fail "no default target in discovery"; }
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$port/$def/0" > "$tmpdir/cap" || fail "default LUN 0"
grep -q "Total size:2097152" "$tmpdir/cap" || fail "default LUN 0 is not 2 MiB"
serve_stop d
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
