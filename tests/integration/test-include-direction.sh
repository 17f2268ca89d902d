#!/bin/sh
# SPDX-License-Identifier: MIT
# test-include-direction.sh: no #include points up the stack (tools ->
# transports/frontends -> emulators -> storage -> common; net -> common),
# as docs/architecture.md states, and each library of Makefile.am is built
# from one folder. Also proves the check has teeth on a copy of two files
# with an upward and a sideways include added, and a two-folder library.
. "$(dirname "$0")/functions.sh"
requires_python re
src=$(cd "$(dirname "$0")/../.." && pwd)
check=$src/tests/integration/include-direction.py

/usr/bin/python3 -I "$check" "$src" > "$tmpdir/out" 2>&1 ||
	{ cat "$tmpdir/out" >&2; fail "includes that point up the stack (UP lines above)"; }
cat "$tmpdir/out"

mkdir -p "$tmpdir/t/common" "$tmpdir/t/storage" "$tmpdir/t/nbd" "$tmpdir/t/ublk"
printf '#include "common/log.h"\n#include <nbd/server.h>\n#include <stdio.h>\n' > "$tmpdir/t/storage/disk.c"
printf '#include "storage/disk.h"\n#include "ublk/q.h"\n' > "$tmpdir/t/nbd/server.c"
: > "$tmpdir/t/common/log.h"; : > "$tmpdir/t/storage/disk.h"
: > "$tmpdir/t/nbd/server.h"; : > "$tmpdir/t/ublk/q.h"
printf 'libdsx_a_SOURCES = common/log.h \\\n\tstorage/disk.h\nlibdsx_pic_a_SOURCES = $(libdsx_a_SOURCES)\n' > "$tmpdir/t/Makefile.am"
if /usr/bin/python3 -I "$check" "$tmpdir/t" > "$tmpdir/bad" 2>&1; then
	cat "$tmpdir/bad" >&2; fail "an upward include passed"
fi
grep -q '^UP   storage/disk.c:2: nbd/server.h (points up' "$tmpdir/bad" ||
	{ cat "$tmpdir/bad" >&2; fail "storage -> nbd not reported"; }
grep -q '^UP   nbd/server.c:2: ublk/q.h (sideways' "$tmpdir/bad" ||
	{ cat "$tmpdir/bad" >&2; fail "nbd -> ublk not reported"; }
grep -q '^LIB  Makefile.am: libdsx.a has sources from common/, storage/$' "$tmpdir/bad" ||
	{ cat "$tmpdir/bad" >&2; fail "a library of two folders not reported"; }
if grep -q 'libdsx_pic' "$tmpdir/bad"; then
	cat "$tmpdir/bad" >&2; fail "a PIC twin reported"
fi
