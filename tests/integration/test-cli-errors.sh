#!/bin/sh
# SPDX-License-Identifier: MIT
# test-cli-errors.sh: every bad usage of the diskstack command exits 2 with
# a message on stderr; --help exits 0; nothing is created by mistake.
. "$(dirname "$0")/functions.sh"

cd "$tmpdir"

# Help and version.
expect_exit 0 "$DISKSTACK" --help
grep -q 'info' "$tmpdir/stdout" || fail "--help does not list info"
grep -q 'copy' "$tmpdir/stdout" || fail "--help does not list copy"
grep -q 'bench' "$tmpdir/stdout" || fail "--help does not list bench"
grep -q 'mem:' "$tmpdir/stdout" || fail "--help does not list the spec kinds"
expect_exit 0 "$DISKSTACK" --version
grep -q '^diskstack [0-9]' "$tmpdir/stdout" || fail "--version output"
expect_exit 0 "$DISKSTACK" help specs
grep -q 'memdiff' "$tmpdir/stdout" || fail "help specs does not list memdiff"
for cmd in info copy bench; do
	expect_exit 0 "$DISKSTACK" "$cmd" --help
	grep -q "Usage: diskstack $cmd" "$tmpdir/stdout" || fail "$cmd --help"
	expect_exit 0 "$DISKSTACK" help "$cmd"
done

# No command, unknown command, unknown global option.
expect_exit 2 "$DISKSTACK"
expect_stderr "missing command"
expect_exit 2 "$DISKSTACK" frobnicate
expect_stderr "unknown command 'frobnicate'"
expect_exit 2 "$DISKSTACK" --frobnicate
expect_stderr "unknown option"
expect_exit 2 "$DISKSTACK" help frobnicate
expect_stderr "frobnicate"

# Missing and extra arguments, unknown options.
expect_exit 2 "$DISKSTACK" info
expect_stderr "missing SPEC"
expect_exit 2 "$DISKSTACK" info mem:1M mem:1M
expect_stderr "too many arguments"
expect_exit 2 "$DISKSTACK" info --bogus mem:1M
expect_stderr "unknown option '--bogus'"
expect_exit 2 "$DISKSTACK" copy
expect_stderr "missing SRC"
expect_exit 2 "$DISKSTACK" copy mem:1M
expect_stderr "missing DST"
expect_exit 2 "$DISKSTACK" copy mem:1M mem:1M --queue-depth 0
expect_stderr "--queue-depth"
expect_exit 2 "$DISKSTACK" copy mem:1M mem:1M --block-size lots
expect_stderr "--block-size"
expect_exit 2 "$DISKSTACK" copy mem:1M mem:1M --block-size
expect_stderr "needs an argument"
expect_exit 2 "$DISKSTACK" bench
expect_stderr "missing SPEC"
expect_exit 2 "$DISKSTACK" bench mem:1M --rw sideways
expect_stderr "--rw"
expect_exit 2 "$DISKSTACK" bench mem:1M --bs 0
expect_stderr "--bs"
expect_exit 2 "$DISKSTACK" bench mem:1M --bs 1000
expect_stderr "sector size"
expect_exit 2 "$DISKSTACK" bench mem:1M --iodepth -1
expect_stderr "--iodepth"
expect_exit 2 "$DISKSTACK" bench mem:1M --time 1s --ops 10
expect_stderr "--time and --ops"
expect_exit 2 "$DISKSTACK" bench mem:1M --time soon
expect_stderr "--time"
expect_exit 2 "$DISKSTACK" bench mem:1M --rwmix 101
expect_stderr "--rwmix"
expect_exit 2 "$DISKSTACK" bench mem:1M --size 2M
expect_stderr "past the end"

# Bad specs: the message names the offending part.
expect_exit 2 "$DISKSTACK" info bogus:thing
expect_stderr "bogus"
expect_exit 2 "$DISKSTACK" info mem:lots
expect_stderr "lots"
expect_exit 2 "$DISKSTACK" info 'file:x.img;bogus'
expect_stderr "bogus"
expect_exit 2 "$DISKSTACK" copy mem:1M bogus:thing
expect_stderr "bogus"
expect_exit 2 "$DISKSTACK" bench nosuchkind:x
expect_stderr "nosuchkind"

# info on a missing file: an error naming the path, and no file created.
_got=0
"$DISKSTACK" info "$tmpdir/missing.img" >"$tmpdir/stdout" 2>"$tmpdir/stderr" || _got=$?
[ "$_got" = 1 ] || [ "$_got" = 2 ] || fail "info on a missing file exited $_got"
expect_stderr "missing.img"
[ ! -e "$tmpdir/missing.img" ] || fail "info created missing.img"
_got=0
"$DISKSTACK" info "file:$tmpdir/missing2.img" >"$tmpdir/stdout" 2>"$tmpdir/stderr" || _got=$?
[ "$_got" = 1 ] || [ "$_got" = 2 ] || fail "info on a missing file: exited $_got"
expect_stderr "missing2.img"
[ ! -e "$tmpdir/missing2.img" ] || fail "info created missing2.img"

# info never creates, even when asked.
expect_exit 2 "$DISKSTACK" info "file:$tmpdir/new.img;create=1M"
expect_stderr "create"
[ ! -e "$tmpdir/new.img" ] || fail "info created new.img"

# copy into a bare path that does not exist: refused with a hint.
expect_exit 2 "$DISKSTACK" copy mem:1M "$tmpdir/out.img"
expect_stderr "create="
[ ! -e "$tmpdir/out.img" ] || fail "copy created out.img"

# bench refuses to write to a file without --force-write.
dd if=/dev/zero of="$tmpdir/disk.img" bs=1024 count=1024 2>/dev/null
expect_exit 2 "$DISKSTACK" bench "$tmpdir/disk.img" --rw randwrite --ops 10
expect_stderr "--force-write"
expect_exit 2 "$DISKSTACK" bench "$tmpdir/disk.img" --prefill --ops 10
expect_stderr "--force-write"

echo "$0: OK"
