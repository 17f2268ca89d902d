#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbdkit-plugin-copy.sh: data through `nbdkit diskstack`. nbdcopy round
# trips through memdiff: (the file below untouched), crypt: (what lands in
# the file is not the plaintext, and reads back through a second server)
# and sql: (persists across servers); nbdkit's filters stacked on top
# (cow + blocksize + stats over a read-only file; delay, error, readahead,
# cache and log over RAM); and nbdkit in the background (forked: the spec
# opens after the fork, relative paths still name the test directory, and
# SIGTERM stops it with a writable SQLite disk open).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit-functions.sh"
requires_plugin
requires nbdcopy cmp
requires_python nbd.NBD
cd "$tmpdir"

head -c 8M /dev/urandom > src.img
roundtrip()
{
	nbdkit -U - "$plugin" "$@" --run 'nbdcopy src.img "$uri" && nbdcopy "$uri" out.img' ||
		fail "nbdcopy through $* failed"
	cmp src.img out.img || fail "$*: data differs"
	rm -f out.img
}

truncate -s 8M golden.raw
roundtrip memdiff:file:golden.raw
cmp -n 8388608 golden.raw /dev/zero || fail "memdiff: wrote to its lower file"

xts_key key
truncate -s 8M enc.raw
roundtrip crypt:xts-aes-256:key:file:enc.raw
cmp -s src.img enc.raw && fail "crypt: the file holds the plaintext"
nbdkit -U - "$plugin" crypt:xts-aes-256:key:file:enc.raw,ro --run 'nbdcopy "$uri" out.img'
cmp src.img out.img || fail "crypt: a second server reads other data"
rm -f out.img

if [ "$(kind_missing sql)" = "" ]; then
	roundtrip "sql:disk.dbhd;create=8M"
	nbdkit -U - "$plugin" sql:disk.dbhd,ro --run 'nbdcopy "$uri" out.img'
	cmp src.img out.img || fail "sql: not persisted"
	rm -f out.img
fi

# Filters on top. cow makes a read-only stack writable without touching
# it; blocksize serves unaligned requests with read-modify-write; stats
# counts what went by.
cp src.img base.raw
nbdkit -U - --filter=cow --filter=blocksize --filter=stats "$plugin" file:base.raw,ro \
	statsfile="$tmpdir/stats.txt" --run "$py -c '
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
base = open(\"base.raw\", \"rb\").read()
assert h.pread(3, 1) == base[1:4]
h.pwrite(b\"abc\", 7)
assert h.pread(10, 0) == base[0:7] + b\"abc\"
h.flush()
' \"\$uri\"" || fail "cow + blocksize + stats"
cmp src.img base.raw || fail "cow: the read-only file changed"
# stats sits under cow: it sees the plugin's reads, never a write.
grep -q '^read: ' stats.txt && ! grep -q '^write: ' stats.txt || { cat stats.txt >&2; fail "stats: expected reads only"; }

# through FILTER [PARAMS...]: a round trip through one filter over RAM.
through()
{
	_f=$1
	shift
	nbdkit -U - "$_f" "$plugin" mem:8M "$@" \
		--run 'nbdcopy src.img "$uri" && nbdcopy "$uri" out.img' || fail "$_f failed"
	cmp src.img out.img || fail "$_f: data differs"
	rm -f out.img
}
through --filter=delay rdelay=1ms wdelay=1ms
through --filter=readahead
# Write-through: in nbdkit 1.32 the writeback cache passes block status
# down unchanged, so nbdcopy skips dirty blocks the plugin reports as
# holes (nbdkit's own memory plugin reads back zeroes the same way).
through --filter=cache cache=writethrough
through --filter=log logfile="$tmpdir/nbd.log"
through --filter=error error-pread-rate=0%
grep -q 'Write ' nbd.log || fail "log filter: no writes logged"
# The error filter's errors reach the client as EIO.
nbdkit -U - --filter=error "$plugin" mem:1M error-pread=EIO error-pread-rate=100% \
	--run "$py -c '
import errno, nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
try:
    h.pread(512, 0)
    sys.exit(\"read succeeded\")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
' \"\$uri\"" 2>/dev/null || fail "error filter: no EIO"

# Forked (no -f, no --run): opened after the fork, in which nbdkit has
# chdir'd to /, so the relative path must have been resolved before.
if [ "$(kind_missing sql)" = "" ]; then
	nbdkit -U "$tmpdir/bg.sock" -P "$tmpdir/bg.pid" "$plugin" "sql:bg.dbhd;create=8M" ||
		fail "nbdkit did not start"
	i=0
	until [ -S bg.sock ] && [ -s bg.pid ] && nbdinfo --can write "nbd+unix:///?socket=$tmpdir/bg.sock"; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "background nbdkit did not serve"
		sleep 0.1
	done
	cleanup_fn "stop_bg '$tmpdir/bg.pid'"
	[ -f bg.dbhd ] || fail "the relative sql: path was not resolved before the fork"
	nbdcopy src.img "nbd+unix:///?socket=$tmpdir/bg.sock" || fail "copy to the background server"
	pid=$(cat bg.pid)
	kill -TERM "$pid"
	wait_gone "$pid" 100 "nbdkit did not stop within 10 s of SIGTERM"
	nbdkit -U - "$plugin" sql:bg.dbhd,ro --run 'nbdcopy "$uri" out.img'
	cmp src.img out.img || fail "background sql: data not persisted"
fi
echo "$0: ok"
