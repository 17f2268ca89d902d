#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-commit.sh: layer-commit and the job methods (docs/ctl.md,
# docs/layered.md "Commit"). serve memdiff:file:base.img with --control,
# write through NBD, layer-commit, wait for the job, stop the server and
# compare base.img with what was written; a cancelled job (the export
# still reads what was written); a job that fails on the disk below (its
# errno reported, nothing lost); refusals: a base served read-only over
# NBD, a stack without an overlay, a second commit while one runs.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires cmp truncate
requires_nbd_python
requires_kind nbd
cd "$tmpdir"
sock=$tmpdir/nbd.sock

# job_wait ID: polls job-get until the job is no longer running; leaves
# its last answer in $tmpdir/stdout.
job_wait()
{
	_i=0
	while :; do
		expect_exit 0 c job-get id="$1"
		grep -q '"state":"running"' "$tmpdir/stdout" || return 0
		_i=$((_i + 1))
		[ $_i -lt 600 ] || fail "job $1 still running after 60 s"
		sleep 0.1
	done
}
job_id()
{
	"$PY" -I -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$tmpdir/stdout"
}
# writes URI FILE SEED: the same random writes and zeroings through NBD and
# into FILE (the model of what the export must read).
writes()
{
	"$PY" -I - "$@" <<'PYEOF' || fail "the NBD writes failed"
import nbd, random, sys
rnd = random.Random(int(sys.argv[3]))
h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
with open(sys.argv[2], "r+b") as f:
    for i in range(120):
        n = 512 * rnd.randint(1, 64)
        off = 512 * rnd.randrange((size - n) // 512)
        data = bytes(n) if i % 7 == 0 else rnd.randbytes(n)
        if i % 7 == 0:
            h.zero(n, off)
        else:
            h.pwrite(data, off)
        f.seek(off)
        f.write(data)
h.flush()
h.shutdown()
PYEOF
}
# same URI FILE: the export reads exactly FILE.
same()
{
	"$PY" -I - "$@" <<'PYEOF' || fail "the export does not read what was written"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
want = open(sys.argv[2], "rb").read()
assert h.get_size() == len(want)
for off in range(0, len(want), 1 << 20):
    assert h.pread(1 << 20, off) == want[off:off + (1 << 20)], off
h.shutdown()
PYEOF
}
# written_export NAME STEM DECORATORS SEED: STEM.img, a copy of base.img,
# served as export NAME by memdiff:DECORATORS file:STEM.img (DECORATORS
# a spec prefix ending in ':'), then the writes of SEED through it;
# STEM-want.img holds what the export must read.
written_export()
{
	cp base.img "$2.img"
	cp base.img "$2-want.img"
	expect_exit 0 c export-add name="$1" spec="memdiff:$3file:$tmpdir/$2.img"
	writes "$(uri_unix "$sock" "$1")" "$2-want.img" "$4"
}

head -c $((16 << 20)) /dev/urandom > base.img
cp base.img want.img
serve s -U "$sock" --control "$ctl" -e a=memdiff:file:"$tmpdir/base.img" -e m=mem:1M

# Commit: the job runs to done and base.img alone holds what was written.
writes "$(uri_unix "$sock" a)" want.img 1
cmp -s base.img want.img && fail "the writes reached base.img before the commit"
expect_exit 0 c layer-commit target=a
json_check "$tmpdir/stdout" 'r["type"] == "layer-commit" and r["target"] == "a" and r["sector_size"] == 512'
id=$(job_id)
job_wait "$id"
json_check "$tmpdir/stdout" 'r["state"] == "done" and r["passes"] >= 1 and "error" not in r'
json_check "$tmpdir/stdout" 'r["sectors_done"] == r["sectors_total"] and r["sectors_done"] > 0'
expect_exit 0 c job-list
json_check "$tmpdir/stdout" "[j['id'] for j in r] == [$id]"
# The overlay is kept and reads the same.
same "$(uri_unix "$sock" a)" want.img
cmp base.img want.img || fail "base.img differs from what was written after the commit"

# Refusals: no overlay; a base the server may not write (an NBD export
# served read-only by a second server).
expect_exit 1 c layer-commit target=m
expect_stderr "error -32004"
expect_stderr "no RAM or SQLite overlay"
expect_exit 1 c layer-commit target=nosuch
expect_stderr "error -32001"
cp base.img ro.img
serve r -U "$tmpdir/ro.sock" -r -e base=file:"$tmpdir/ro.img"
expect_exit 0 c export-add name=r spec="memdiff:nbd:nbd+unix:///base?socket=$tmpdir/ro.sock"
expect_exit 1 c layer-commit target=r
expect_stderr "error -32004"
expect_stderr "cannot be opened writable"
expect_exit 1 c job-get id=999
expect_stderr "error -32001"

# Cancel: a commit into a base whose writes take a second each cannot
# finish before the cancel; a second commit meanwhile is busy. The export
# still reads what was written.
written_export b slow delay:0/1000: 2
expect_exit 0 c layer-commit target=b
id2=$(job_id)
expect_exit 1 c layer-commit target=b
expect_stderr "error -32005"
expect_exit 0 c job-cancel id="$id2"
job_wait "$id2"
json_check "$tmpdir/stdout" 'r["state"] == "cancelled" and r["sectors_done"] < r["sectors_total"]'
same "$(uri_unix "$sock" b)" slow-want.img

# A write error of the disk below fails the job with its errno; the
# overlay still has everything.
written_export e err error:write:enospc: 3
expect_exit 0 c layer-commit target=e
id3=$(job_id)
job_wait "$id3"
json_check "$tmpdir/stdout" 'r["state"] == "failed" and r["error"]["errno"] == 28'
json_check "$tmpdir/stdout" '"writing the disk below" in r["error"]["message"]'
same "$(uri_unix "$sock" e)" err-want.img
expect_exit 0 c job-list
json_check "$tmpdir/stdout" "[j['id'] for j in r] == [$id, $id2, $id3]"

serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
cmp base.img want.img || fail "base.img changed after the server stopped"
serve_stop r
exit 0
