#!/bin/sh
# SPDX-License-Identifier: MIT
# test-deps-packaged.sh: every program and Python module that tests/,
# tools/ and tests/vm use comes from a Debian package that
# tools/quickstart.sh installs, or from one every Debian system has
# (deps-packaged.py says how it finds them). A package installed by hand on
# a developer machine and never added to the script fails here, not on the
# next fresh machine. Also proves the check has teeth: with one needed
# package dropped from a copy of the script, it must report that gap.
. "$(dirname "$0")/functions.sh"
requires dpkg-query
requires_python json
[ -d /var/lib/dpkg/info ] || skip "not a Debian system (no dpkg database)"
src=$(cd "$(dirname "$0")/../.." && pwd)
check=$src/tests/integration/deps-packaged.py

/usr/bin/python3 -I "$check" "$src" > "$tmpdir/deps.out" 2>&1 || {
	cat "$tmpdir/deps.out" >&2
	fail "dependencies that tools/quickstart.sh does not install (GAP lines above)"
}
grep -q '^ok   python module nbd: .* from python3-libnbd' "$tmpdir/deps.out" ||
	fail "the scan no longer sees the nbd module"
grep -q '^ok   program nbdkit: ' "$tmpdir/deps.out" ||
	fail "the scan no longer sees nbdkit"

# The same tree with python3-libnbd and fuse3 left out of the script: both
# gaps must be reported (the tree is linked, the script copied).
mkdir -p "$tmpdir/tree/tools"
for d in tests .ci configure.ac; do
	[ -e "$src/$d" ] && ln -s "$src/$d" "$tmpdir/tree/$d"
done
grep -vx '	python3-libnbd' "$src/tools/quickstart.sh" | grep -vx '	fuse3' \
	> "$tmpdir/tree/tools/quickstart.sh"
if /usr/bin/python3 -I "$check" "$tmpdir/tree" > "$tmpdir/gap.out" 2>&1; then
	cat "$tmpdir/gap.out" >&2
	fail "a script without python3-libnbd and fuse3 passed the check"
fi
grep -q '^GAP  python module nbd: .*python3-libnbd, which tools/quickstart.sh does not install' \
	"$tmpdir/gap.out" || { cat "$tmpdir/gap.out" >&2; fail "missing python3-libnbd not reported"; }
grep -q '^GAP  program fusermount3: .*fuse3, which tools/quickstart.sh does not install' \
	"$tmpdir/gap.out" || { cat "$tmpdir/gap.out" >&2; fail "missing fuse3 not reported"; }
tail -n 1 "$tmpdir/deps.out"

# A program found on $PATH outside any package (a hand-made /opt, ~/.local
# or virtualenv binary shadowing the packaged one) is a gap too.
mkdir -p "$tmpdir/fakebin"
printf '#!/bin/sh\nexit 0\n' > "$tmpdir/fakebin/nbdcopy"
chmod +x "$tmpdir/fakebin/nbdcopy"
if PATH="$tmpdir/fakebin:$PATH" /usr/bin/python3 -I "$check" "$src" > "$tmpdir/fake.out" 2>&1; then
	cat "$tmpdir/fake.out" >&2
	fail "an unpackaged nbdcopy first on PATH passed the check"
fi
grep -q "^GAP  program nbdcopy: $tmpdir/fakebin/nbdcopy belongs to no Debian package" \
	"$tmpdir/fake.out" || { cat "$tmpdir/fake.out" >&2; fail "the unpackaged nbdcopy was not reported"; }
