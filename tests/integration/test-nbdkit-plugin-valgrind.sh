#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbdkit-plugin-valgrind.sh: nbdkit with the diskstack plugin under
# valgrind (memcheck, definite leaks are errors) for one nbdcopy round trip
# through memdiff:file: and one through an SQLite disk: per-thread
# reactors created by nbdkit's workers and freed when they exit, the spec
# opened after the fork and dropped at cleanup, with zero errors.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit-functions.sh"
requires_plugin
requires valgrind nbdcopy cmp
if [ -n "${DISKSTACK_SANITIZED:-}" ]; then
	# The plugin itself is built without sanitizers, but this build's
	# other objects are not, and valgrind and ASan do not mix anyway.
	echo "$0: skipped: valgrind runs in the normal build"
	exit 77
fi
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
cd "$tmpdir"
head -c 4M /dev/urandom > src.img
truncate -s 4M golden.raw

vg()
{
	_log=$1
	shift
	valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--show-leak-kinds=definite --track-origins=yes --quiet \
		--suppressions="$srcdir/tests/valgrind.supp" --log-file="$_log" "$@" ||
		{ cat "$_log" >&2; fail "valgrind: $* exited with $?"; }
	[ ! -s "$_log" ] || { cat "$_log" >&2; fail "valgrind reported errors for $*"; }
}

vg vg1.log nbdkit -U - "$plugin" memdiff:file:golden.raw \
	--run 'nbdcopy src.img "$uri" && nbdcopy "$uri" out.img'
cmp src.img out.img || fail "memdiff: data differs"
rm -f out.img
if [ "$(kind_missing sql)" = "" ]; then
	vg vg2.log nbdkit -U - "$plugin" "sql:disk.dbhd;create=4M" \
		--run 'nbdcopy src.img "$uri" && nbdcopy "$uri" out.img'
	cmp src.img out.img || fail "sql: data differs"
fi
echo "$0: ok"
