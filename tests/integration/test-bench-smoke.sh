#!/bin/sh
# SPDX-License-Identifier: MIT
# test-bench-smoke.sh: `diskstack bench` runs every --rw mode briefly,
# prints IOPS, emits valid JSON, and refuses to write to a file without
# --force-write.
. "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 sha256sum

for rw in read write randread randwrite randrw; do
	expect_exit 0 "$DISKSTACK" bench mem:64M --rw $rw --ops 20000 --iodepth 8
	grep -q 'IOPS=' "$tmpdir/stdout" || fail "bench --rw $rw printed no IOPS"
	expect_exit 0 "$DISKSTACK" bench mem:64M --rw $rw --time 200ms --threads 2 --bs 8K
	grep -q 'IOPS=' "$tmpdir/stdout" || fail "bench --rw $rw --time printed no IOPS"
done

# JSON parses and adds up.
expect_exit 0 "$DISKSTACK" bench mem:64M --rw randrw --rwmix 50 --ops 10000 --threads 2 --json
/usr/bin/python3 -I -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["rw"] == "randrw", d
assert d["ops"] == 10000, d["ops"]
assert d["read"]["ops"] + d["write"]["ops"] == 10000
assert d["read"]["ops"] > 0 and d["write"]["ops"] > 0
assert d["iops"] > 0 and d["errors"] == 0
lat = d["total"]["lat_ns"]
assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat
# The whole process spans the workers measured phases (and a little more).
assert 0 < d["cpu_s"] <= d["process_cpu_s"] + 0.01, (d["cpu_s"], d["process_cpu_s"])
' "$tmpdir/stdout" || fail "bench --json"

# --prefill and a sub-range on a RAM overlay of a file: the file is not
# touched (writes land in RAM).
img=$tmpdir/disk.img
dd if=/dev/urandom of="$img" bs=1M count=4 2>/dev/null
sum=$(sha256sum "$img" | cut -d' ' -f1)
expect_exit 0 "$DISKSTACK" bench "memdiff:file:$img" --rw randwrite --prefill --size 1M+2M --ops 2000
[ "$sum" = "$(sha256sum "$img" | cut -d' ' -f1)" ] || fail "memdiff bench modified the file"

# Reads from a file are fine; writes need --force-write.
expect_exit 0 "$DISKSTACK" bench "$img" --rw randread --ops 2000
expect_exit 2 "$DISKSTACK" bench "$img" --rw randwrite --ops 10
expect_stderr "--force-write"
expect_exit 2 "$DISKSTACK" bench "file:$img" --rw randrw --ops 10
expect_stderr "--force-write"
[ "$sum" = "$(sha256sum "$img" | cut -d' ' -f1)" ] || fail "refused bench modified the file"
expect_exit 0 "$DISKSTACK" bench "$img" --rw randwrite --ops 100 --force-write
expect_stderr "WARNING"

echo "$0: OK"
