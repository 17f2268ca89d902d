#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-export-load.sh: exports added and removed over the control
# socket while fio (nbd engine) writes and verifies on another export:
# fio sees no error and its connection stays up; a client bound to an
# export being removed is drained and cut off, and the name disappears
# for new clients at once.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires fio nbdinfo
requires_nbd_python
cd "$tmpdir"
sock=$tmpdir/nbd.sock


serve s -U "$sock" --control "$ctl" -t 2 -e a=mem:64M

# fio on export a for a few seconds, verifying what it wrote; the churn
# below runs meanwhile (how many rounds fit does not matter).
fio --name=steady --ioengine=nbd --uri="$(uri_unix "$sock" a)" --rw=randrw --bs=4k \
	--size=32M --iodepth=8 --time_based --runtime=4 --verify=crc32c --verify_fatal=1 \
	--verify_state_save=0 --output="$tmpdir/fio.out" &
fio_pid=$!
cleanup_fn "kill $fio_pid 2>/dev/null"

# Wait for fio's connection, so the churn overlaps its I/O.
i=0
until c connection-list export=a | grep -q '"export":"a"'; do
	i=$((i + 1))
	[ $i -lt 200 ] || fail "fio never connected"
	sleep 0.05
done

round=0
while kill -0 "$fio_pid" 2>/dev/null && [ $round -lt 20 ]; do
	round=$((round + 1))
	expect_exit 0 c export-add name=x$round spec=mem:8M
	[ "$(nbdinfo --size "$(uri_unix "$sock" x$round)")" = $((8 << 20)) ] ||
		fail "export x$round not served"
	# A client holding a connection to the export being removed.
	"$PY" -I - "$(uri_unix "$sock" x$round)" "$DISKSTACK" "$ctl" x$round <<'PYEOF' ||
import json, nbd, subprocess, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"y" * 4096, 0)
out = subprocess.run([sys.argv[2], "ctl", "-S", sys.argv[3], "export-remove", "name=" + sys.argv[4]],
                     check=True, capture_output=True).stdout
r = json.loads(out)
assert r == {"connections_closed": 1, "flushed": True}, r
try:
    h.pread(512, 0)
    raise SystemExit("the removed export still answers")
except nbd.Error:
    pass
PYEOF
		fail "removing x$round with a client on it"
	nbdinfo --size "$(uri_unix "$sock" x$round)" >/dev/null 2>&1 &&
		fail "x$round is still served after removal"
done
[ $round -ge 1 ] || fail "no round ran while fio did"

fio_status=0
wait "$fio_pid" || fio_status=$?
[ $fio_status -eq 0 ] || { cat "$tmpdir/fio.out"; fail "fio failed ($fio_status)"; }
grep -q 'err= 0' "$tmpdir/fio.out" || { cat "$tmpdir/fio.out"; fail "fio reported errors"; }
expect_exit 0 c stats target=a
"$PY" -I -c 'import json, sys; e = json.load(open(sys.argv[1]))["exports"][0]
assert e["read"]["errors"] == 0 and e["write"]["errors"] == 0 and e["write"]["ops"] > 0, e' \
	"$tmpdir/stdout" || fail "export a saw errors"
expect_exit 0 c export-list
"$PY" -I -c 'import json, sys; r = json.load(open(sys.argv[1])); assert [e["name"] for e in r] == ["a"], r' \
	"$tmpdir/stdout" || fail "exports left behind"
serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
exit 0
