#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-sqlite.sh: throughput of the SQLite layer (sql: disks) with the
# in-process load generator. Not a pass/fail test; prints the numbers and
# the targets of docs/layer-sqlite.md:
#   4 KiB random writes, one thread, a flush every 1000 writes: >= 20,000 IOPS
#   4 KiB random reads of sectors present in the layer:          >= 100,000 IOPS
# Usage: tests/bench/bench-sqlite.sh [DISKSTACK] [DIR] [SECONDS]
set -e
DISKSTACK=${1:-${DISKSTACK:-./diskstack}}
dir=${2:-${TMPDIR:-/tmp}}
secs=${3:-10}
db=$(mktemp -u "$dir/bench-sqlite.XXXXXX").dbhd
trap 'rm -f "$db" "$db-wal" "$db-shm"' EXIT

"$DISKSTACK" create "$db" 1G -q
echo "== sql: 4 KiB random writes, 1 thread, iodepth 32, flush every 1000 writes (target >= 20000 IOPS)"
"$DISKSTACK" bench "sql:$db" --rw randwrite --bs 4K --iodepth 32 --size 256M \
	--flush-every 1000 --time "${secs}s" --force-write --quiet
echo "== sql: fill 256 MiB, then 4 KiB random reads of present sectors, 1 thread (target >= 100000 IOPS)"
"$DISKSTACK" bench "sql:$db" --rw write --bs 1M --size 256M --ops 256 --force-write --quiet >/dev/null
"$DISKSTACK" bench "sql:$db" --rw randread --bs 4K --iodepth 32 --size 256M --time "${secs}s" --quiet
echo "== sql: 4 KiB random reads, 2 threads"
"$DISKSTACK" bench "sql:$db" --rw randread --bs 4K --iodepth 32 --threads 2 --size 256M \
	--time "${secs}s" --quiet
echo "== sql: 4 KiB random writes, 1 thread, iodepth 1 (no batching)"
"$DISKSTACK" bench "sql:$db" --rw randwrite --bs 4K --iodepth 1 --size 256M \
	--time "${secs}s" --force-write --quiet
echo "== sql: 1 MiB sequential reads"
"$DISKSTACK" bench "sql:$db" --rw read --bs 1M --iodepth 4 --size 256M --time "${secs}s" --quiet
