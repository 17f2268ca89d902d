#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbdkit-plugin-info.sh: what `nbdkit diskstack SPEC` advertises, read
# back with nbdinfo (docs/nbdkit-plugin.md): size, block sizes and every
# capability for a writable RAM disk, a read-only one, a layered disk with
# block status and an SQLite disk; --dump-plugin and --help; and the
# errors a user sees for a missing, a malformed and an unopenable spec.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit-functions.sh"
requires_plugin
cd "$tmpdir"

# info SPEC...: nbdinfo of a captive nbdkit into info.txt.
info()
{
	nbdkit -U - "$plugin" "$@" --run 'nbdinfo "$uri"' > info.txt 2> info.err ||
		{ cat info.err >&2; fail "nbdinfo of $* failed"; }
}
has()
{
	grep -q -x "	$1" info.txt || { cat info.txt >&2; fail "$spec: expected '$1'"; }
}

spec=mem:64M
info "$spec"
has "export-size: 67108864 (64M)"
has "block_size_minimum: 512"
has "block_size_preferred: 4096"
has "block_size_maximum: 33554432"
for cap in is_read_only:false can_flush:true can_fua:true can_trim:true can_zero:true \
	can_fast_zero:true can_multi_conn:true can_cache:true; do
	has "${cap%%:*}: ${cap#*:}"
done
# spec= is the same as the bare argument.
info spec=mem:1M
has "export-size: 1048576 (1M)"

# A read-only spec: nothing that writes is offered.
spec=mem:1M,ro
info "$spec"
for cap in is_read_only:true can_trim:false can_zero:false can_fast_zero:false can_flush:true; do
	has "${cap%%:*}: ${cap#*:}"
done

# Block status: a diff layer over an empty file reports a hole; after a
# write the written part is data.
truncate -s 8M golden.raw
nbdkit -U - "$plugin" memdiff:file:golden.raw --run '
	nbdinfo --map "$uri" > map0.txt &&
	nbdcopy --synchronous -- [ nbdkit pattern 1M ] "$uri" &&
	nbdinfo --map "$uri" > map1.txt' || fail "memdiff map failed"
grep -q '^ *0 *8388608 *3 *hole,zero$' map0.txt || { cat map0.txt >&2; fail "memdiff: expected one hole"; }
grep -q '^ *0 *1048576 *0 *data$' map1.txt || { cat map1.txt >&2; fail "memdiff: written part not data"; }
grep -q '^ *1048576 *7340032 *3 *hole,zero$' map1.txt || { cat map1.txt >&2; fail "memdiff: rest not a hole"; }
cmp golden.raw /dev/zero 2>&1 | grep -q EOF || fail "memdiff wrote to its lower file"

# An SQLite disk: coherent across connections, with a cache to flush.
if [ "$(kind_missing sql)" = "" ]; then
	spec="sql:x.dbhd;create=16M"
	info "$spec"
	has "export-size: 16777216 (16M)"
	has "can_multi_conn: true"
	has "can_flush: true"
fi

# --dump-plugin names the kinds; --help shows the syntax.
nbdkit "$plugin" --dump-plugin > dump.txt
grep -q '^thread_model=parallel$' dump.txt || fail "--dump-plugin: not parallel"
grep -q '^diskstack_kinds=mem,memdiff,file' dump.txt || fail "--dump-plugin: no kinds"
nbdkit "$plugin" --help > help.txt
grep -q 'spec=' help.txt || fail "--help does not describe spec="

# Errors a user sees, and nbdkit exits non-zero.
expect_exit 1 nbdkit -U - "$plugin" --run true
expect_stderr "no spec given"
expect_exit 1 nbdkit -U - "$plugin" mem:invalid --run true
expect_stderr "bad size 'invalid' at offset 4 of 'mem:invalid'"
expect_exit 1 nbdkit -U - "$plugin" mem:1M mem:2M --run true
expect_stderr "only one spec may be given"
# Opened after --run started (nbdkit runs after_fork later): in the
# foreground without --run nbdkit's own exit status shows the failure.
expect_exit 1 nbdkit -f -U "$tmpdir/e.sock" "$plugin" "file:missing.img"
expect_stderr "diskstack: cannot open the spec: file:missing.img: No such file or directory"
echo "$0: ok"
