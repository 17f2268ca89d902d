#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ublk-cli.sh: `diskstack ublk` on a host without the ublk driver (the
# development machines and CI): usage errors exit 2 with a message before
# anything touches the kernel, and a missing driver is a clear run-time
# error (exit 1). The driver itself is exercised in tests/vm/.
. "$(dirname "$0")/functions.sh"

expect_exit 0 "$DISKSTACK" ublk --help
grep -q 'Usage: diskstack ublk add SPEC' "$tmpdir/stdout" || fail "ublk --help"
expect_exit 0 "$DISKSTACK" ublk add --help
expect_exit 0 "$DISKSTACK" help ublk
"$DISKSTACK" --help | grep -q '^  ublk ' || fail "--help does not list ublk"

expect_exit 2 "$DISKSTACK" ublk
expect_stderr "missing subcommand"
expect_exit 2 "$DISKSTACK" ublk frobnicate
expect_stderr "unknown subcommand 'frobnicate'"
expect_exit 2 "$DISKSTACK" ublk add
expect_stderr "missing SPEC"
expect_exit 2 "$DISKSTACK" ublk add mem:1M mem:2M
expect_stderr "too many arguments"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --queues 0
expect_stderr "--queues must be from 1 to 4096"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --queues 5000
expect_stderr "--queues"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --depth 0
expect_stderr "--depth"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --depth 4097
expect_stderr "--depth"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --max-io 6K
expect_stderr "--max-io must be a multiple of 4K"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --max-io 64M
expect_stderr "--max-io"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --id -1
expect_stderr "--id"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --copy fast
expect_stderr "--copy must be auto, kernel or user"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --pidfile
expect_stderr "needs an argument"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --frob
expect_stderr "unknown option '--frob'"
expect_exit 2 "$DISKSTACK" ublk add mem:1M --json
expect_stderr "--json is not an option of 'ublk add'"
expect_exit 2 "$DISKSTACK" ublk add nosuchkind:1M
expect_stderr "bad SPEC"
expect_exit 2 "$DISKSTACK" ublk del
expect_stderr "missing ID"
expect_exit 2 "$DISKSTACK" ublk del zero
expect_stderr "bad device ID 'zero'"
expect_exit 2 "$DISKSTACK" ublk del 1 2
expect_stderr "too many arguments"
expect_exit 2 "$DISKSTACK" ublk del 1 --queues 2
expect_stderr "not an option"
expect_exit 2 "$DISKSTACK" ublk recover
expect_stderr "missing ID"
expect_exit 2 "$DISKSTACK" ublk recover 3 mem:1M --ro
expect_stderr "--ro is not an option of 'ublk recover'"
DISKSTACK_RUN_DIR=$tmpdir/run expect_exit 2 "$DISKSTACK" ublk recover 3
expect_stderr "missing SPEC (device 3 has no record"
expect_exit 2 "$DISKSTACK" ublk list extra
expect_stderr "too many arguments"

# No driver: a clear error, nothing printed on stdout, no record left.
export DISKSTACK_UBLK_CONTROL="$tmpdir/no-ublk-control"
export DISKSTACK_RUN_DIR="$tmpdir/run"
for args in "add mem:1M" "list" "del 0" "recover 0 mem:1M"; do
	# shellcheck disable=SC2086
	expect_exit 1 "$DISKSTACK" ublk $args
	expect_stderr "the ublk driver is not available: $tmpdir/no-ublk-control does not exist"
	[ ! -s "$tmpdir/stdout" ] || fail "'ublk $args' printed on stdout"
done
expect_exit 1 "$DISKSTACK" ublk add mem:1M --daemon --pidfile "$tmpdir/p"
expect_stderr "the ublk driver is not available"
[ ! -e "$tmpdir/p" ] || fail "pidfile written for a failed daemon"
[ ! -e "$tmpdir/run/ublk" ] || [ -z "$(ls "$tmpdir/run/ublk")" ] || fail "record left behind"
# The spec is opened only after the driver is found: a missing image still
# reports the driver first; a bad spec is a usage error before either.
expect_exit 1 "$DISKSTACK" ublk add "file:$tmpdir/none.img"
expect_stderr "ublk driver is not available"
exit 0
