#!/bin/sh
# SPDX-License-Identifier: MIT
# test-diskemu-install.sh: libdiskemu as an outside program sees it
# (docs/nvme.md, "Embedding"). `make install DESTDIR=...`, then, against
# that tree only (pkg-config with PKG_CONFIG_SYSROOT_DIR and
# PKG_CONFIG_PATH pointing into it, no path into the source tree):
#   - every installed header compiles alone;
#   - the shared library exports only what the headers declare;
#   - diskemu-embed.c, a minimal VMM, builds with
#     `cc diskemu-embed.c $(pkg-config --cflags --libs diskemu)` and brings
#     the NVMe PCI function up on a mem: disk: Identify, a 4 KiB write and
#     read back, an MSI-X message; and under valgrind when it is there.
. "$(dirname "$0")/functions.sh"
requires pkg-config make nm
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${abs_top_builddir:-$(dirname "$DISKSTACK")}
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || requires cc

dest=$tmpdir/root
# A fresh make: not the one running this test (its flags and jobserver).
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$build" install DESTDIR="$dest" \
	> "$tmpdir/install.log" 2>&1 || { cat "$tmpdir/install.log" >&2; fail "make install"; }
pc=$(find "$dest" -name diskemu.pc)
lib=$(find "$dest" -name libdiskemu.so.0)
[ -n "$pc" ] && [ -n "$lib" ] && [ -L "$(dirname "$lib")/libdiskemu.so" ] ||
	fail "diskemu.pc, libdiskemu.so.0 or the libdiskemu.so link not installed ($pc, $lib)"
PKG_CONFIG_SYSROOT_DIR=$dest
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
cflags=$(pkg-config --cflags diskemu) && libs=$(pkg-config --libs diskemu) ||
	fail "pkg-config diskemu"
echo "pkg-config: $cflags $libs"
incdir=$(echo "$cflags" | sed "s/^-I//; s/ *$//")
[ -f "$incdir/diskemu/diskemu.h" ] || fail "diskemu/diskemu.h is not under $incdir"

# Each installed header on its own, with the warnings the tree uses.
warn="-std=c11 -Wall -Wextra -Wstrict-prototypes -Werror"
for h in $(cd "$incdir" && find . -name '*.h' | sed 's|^\./||'); do
	printf '#include <%s>\n' "$h" > "$tmpdir/alone.c"
	# shellcheck disable=SC2086
	$cc $warn $cflags -c "$tmpdir/alone.c" -o "$tmpdir/alone.o" 2> "$tmpdir/cc.log" ||
		{ cat "$tmpdir/cc.log" >&2; fail "$h does not compile alone from the install tree"; }
	echo "compiles alone: $h"
done

# Exports: the headers' functions, nothing of the disk stack below.
nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' > "$tmpdir/exports"
grep -v -e '^diskemu_' -e '^nvmeemu_' -e '^scsi_' "$tmpdir/exports" > "$tmpdir/stray" &&
	{ head -n 20 "$tmpdir/stray" >&2; fail "libdiskemu exports names outside its API"; }
for f in diskemu_thread_start nvmeemu_pci_new nvmeemu_subsys_add_ns scsi_cmd_submit; do
	grep -qx "$f" "$tmpdir/exports" || fail "libdiskemu does not export $f"
done
echo "exports: $(wc -l < "$tmpdir/exports") functions"

# shellcheck disable=SC2086
$cc -std=gnu11 -Wall -Wextra -Werror -o "$tmpdir/embed" "$src/tests/integration/diskemu-embed.c" \
	$cflags $libs -pthread 2> "$tmpdir/cc.log" ||
	{ cat "$tmpdir/cc.log" >&2; fail "the embedding example does not build"; }
LD_LIBRARY_PATH=$(dirname "$lib") "$tmpdir/embed" mem:16M > "$tmpdir/out" 2>&1 ||
	{ cat "$tmpdir/out" >&2; fail "the embedding example failed"; }
cat "$tmpdir/out"
grep -q '^write + read of 4096 bytes: ok' "$tmpdir/out" || fail "no write + read line"
grep -qx ok "$tmpdir/out" || fail "the example did not finish"

# Under memcheck as well (the library and the example are uninstrumented
# in every build): what the embedder hands in is read as it should be,
# and teardown frees it all. Not on a clang-built library: Debian 12's
# valgrind (3.19) gives up on clang's DWARF 5.
if command -v valgrind >/dev/null 2>&1 && ! readelf -p .comment "$lib" 2>/dev/null | grep -q clang; then
	LD_LIBRARY_PATH=$(dirname "$lib") valgrind --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes \
		--quiet --suppressions="$src/tests/valgrind.supp" --log-file="$tmpdir/vg.log" \
		"$tmpdir/embed" mem:16M > "$tmpdir/out" 2>&1 ||
		{ cat "$tmpdir/out" "$tmpdir/vg.log" >&2; fail "the example under valgrind"; }
	[ ! -s "$tmpdir/vg.log" ] || { cat "$tmpdir/vg.log" >&2; fail "valgrind reported errors"; }
	echo "valgrind: clean"
fi
