#!/bin/sh
# SPDX-License-Identifier: MIT
# test-sqlite-crash.sh: crash safety of sql: disks. A writer (the
# crashwriter helper) writes sector after sector with a flush every 64
# writes; it is killed with SIGKILL at a random point; the reopened disk
# must hold every write a completed flush covered, and nothing but data or
# zeroes anywhere else. Repeated over at least 10 kill points, and more
# (up to 40) while the run is under ~25 s: the clock only bounds the extra
# work, it never fails the test.
. "$(dirname "$0")/functions.sh"
requires sqlite3 awk sleep
requires_kind sql

CRASHWRITER=${CRASHWRITER:-$(dirname "$DISKSTACK")/tests/helpers/crashwriter}
[ -x "$CRASHWRITER" ] || { echo "crashwriter not built, skipping"; exit 77; }

db=$tmpdir/crash.dbhd

rounds=0
deadline=$(( $(date +%s) + 25 ))
seed=${DISKSTACK_SEED:-$$}
echo "seed $seed (rerun with DISKSTACK_SEED=$seed)"
while [ $rounds -lt 10 ] || { [ $rounds -lt 40 ] && [ "$(date +%s)" -lt $deadline ]; }; do
	rounds=$((rounds + 1))
	# A fresh disk each round, so that no earlier round's data can stand
	# in for a lost write.
	expect_exit 0 "$DISKSTACK" create "$db" 32M -q --force
	# A kill point between 20 and 600 ms after the start.
	ms=$(awk -v s="$seed" -v r="$rounds" 'BEGIN { srand(s * 1000 + r); print int(20 + rand() * 580) }')
	"$CRASHWRITER" write "sql:$db" 64 > "$tmpdir/out" 2> "$tmpdir/err" &
	pid=$!
	sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
	kill -KILL $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	if [ -s "$tmpdir/err" ]; then
		cat "$tmpdir/err" >&2
		fail "round $rounds: the writer failed"
	fi
	covered=$(awk '/^flushed/ { n = $2 } END { print n + 0 }' "$tmpdir/out")
	"$CRASHWRITER" verify "sql:$db" "$covered" 2> "$tmpdir/verr" ||
		{ cat "$tmpdir/verr" >&2; fail "round $rounds (killed after ${ms} ms, $covered writes flushed): lost data"; }
	# The file is still a sound database.
	[ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] ||
		fail "round $rounds: integrity_check failed"
	echo "round $rounds: killed after ${ms} ms, $covered flushed writes intact"
done
echo "test-sqlite-crash: ok ($rounds kill points)"
