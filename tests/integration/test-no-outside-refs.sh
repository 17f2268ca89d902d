#!/bin/sh
# SPDX-License-Identifier: MIT
# test-no-outside-refs.sh: the repository explains itself. Comments, scripts
# and docs cite public specifications (the NBD protocol document, RFCs,
# SCSI/NVMe/ATA standards, the kernel's ublk UAPI header and
# Documentation/block/ublk.rst, SQLite's file-format pages, the VHD spec,
# IEEE 1619, OpenVMM's public source) or pages in docs/, never a document
# that lives outside the repository. Every tracked text file except the
# fuzz fixtures is checked; then the check is run on a scratch tree with
# one file per kind of bad citation (it must flag each) and with the
# citations we do use (it must flag none), so it is known to have teeth.
. "$(dirname "$0")/functions.sh"
requires_python re
src=$(cd "$(dirname "$0")/../.." && pwd)

cat > "$tmpdir/check.py" <<'EOF'
import os, re, subprocess, sys

# What counts as citing a document outside the repository. Each pattern
# is anchored so that the same words inside a longer path or URL (for
# example docs.python.org/3/reference/) do not match.
OUTSIDE = [
    # The engineers' reference notes (reference/nbd.md, reference/lab.md,
    # reference/openvmm-disk-stack.md §4.2, ...): not in the repository.
    ("reference/", re.compile(r"(?<![\w./-])reference/")),
    # The project's design and style notes, also kept outside. Their
    # content lives in docs/architecture.md and friends.
    ("DESIGN.md/STYLE.md", re.compile(r"(?<![\w./-])(DESIGN|STYLE)\.md\b")),
    # Any path into the shared folder next to the checkouts.
    ("../shared", re.compile(r"(\.\./)+shared\b|/work/shared\b")),
]

# A bare section sign with a number ("§4.6", "§7.2 test 9") means a section
# of some document, and the reader must be able to tell which. It is fine
# when the file names docs/openvmm-compat.md (whose numbering our code
# uses), or when the line (or the one before it) names the document: an
# RFC, an IEEE, SCSI, NVMe or ATA standard, or another .md/.rst/.h page.
SECTION = re.compile(r"§\s*\d")
COMPAT = "openvmm-compat.md"
DOC_NAMED = re.compile(r"\bRFC\s*\d|\bIEEE\b|\bSPC-\d|\bSBC-\d|\bSAM-\d|\bMMC(-\d)?\b|\bNVMe\b|"
                       r"\bATA\b|\bACS-\d|\.md\b|\.rst\b|\.h\b|\b[Vv]irtio 1\.\d|"
                       r"\bPCI(e| Local Bus| Express)?\b|\b[Tt]ransport [Ss]pec")

# Code, scripts and build files (not the .md pages) do not point at the
# project's issue tracker ("issue 15"), which is not in the repository
# either: they say what they mean or cite docs/. An upstream project's public issue
# ("curl issue 11101") names the project on the line or the one before.
ISSUE = re.compile(r"\bissues?[ #-]*\d+", re.I)
UPSTREAM = re.compile(r"\b(curl|libnbd|nbdkit|qemu|liburing|libiscsi|fio|glibc|github|gitlab)\b",
                      re.I)

# Test fixtures hold arbitrary bytes (fuzzer crash inputs); this test
# names the patterns it looks for.
SKIP_PREFIXES = ("tests/fuzz/regress/",)
SKIP_FILES = ("tests/integration/test-no-outside-refs.sh",)

def tracked(root):
    if os.path.isdir(os.path.join(root, ".git")):
        try:
            out = subprocess.run(["git", "-C", root, "ls-files", "-z"],
                                 check=True, capture_output=True).stdout
            return [p for p in out.decode().split("\0") if p]
        except (OSError, subprocess.CalledProcessError):
            pass
    # Not a checkout (a dist tarball, a scratch tree): every file, minus
    # what a build leaves behind.
    files = []
    for d, dirs, names in os.walk(root):
        rel = os.path.relpath(d, root)
        dirs[:] = [x for x in dirs if not (x in (".git", "autom4te.cache", "__pycache__")
                   or (rel == "." and x.startswith("build")))]
        for n in names:
            files.append(os.path.normpath(os.path.join(rel, n)))
    return files

def main(root):
    bad = 0
    for path in sorted(tracked(root)):
        if path.startswith(SKIP_PREFIXES) or path in SKIP_FILES:
            continue
        try:
            with open(os.path.join(root, path), "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"\0" in data:
            continue                # binary
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        has_compat = COMPAT in text
        for i, line in enumerate(lines):
            for name, pat in OUTSIDE:
                if pat.search(line):
                    print(f"OUTSIDE {path}:{i + 1}: {line.strip()} ({name})")
                    bad += 1
            if ISSUE.search(line) and not path.endswith(".md"):
                window = (lines[i - 1] if i else "") + " " + line
                if not UPSTREAM.search(window):
                    print(f"ISSUE   {path}:{i + 1}: {line.strip()} "
                          f"(the issue tracker is not in the repository)")
                    bad += 1
            if SECTION.search(line) and not has_compat:
                window = (lines[i - 1] if i else "") + " " + line
                if not DOC_NAMED.search(window):
                    print(f"BARE-§  {path}:{i + 1}: {line.strip()} "
                          f"(names no document; cite docs/{COMPAT} or the spec)")
                    bad += 1
    print(f"no-outside-refs: {bad} problem(s)")
    return 1 if bad else 0

sys.exit(main(sys.argv[1]))
EOF

/usr/bin/python3 -I "$tmpdir/check.py" "$src" > "$tmpdir/out" 2>&1 ||
	{ cat "$tmpdir/out" >&2; fail "citations of documents outside the repository (lines above)"; }
cat "$tmpdir/out"

# Teeth: a scratch tree (not a git checkout, so the file walk is used).
t=$tmpdir/t
mkdir -p "$t/storage" "$t/docs" "$t/tests/fuzz/regress/x" "$t/build/x"
printf '/* the VHD footer (reference/openvmm-disk-stack.md §4.6) */\n' > "$t/storage/a.c"
printf '# see DESIGN.md §6 for the grammar\n' > "$t/storage/b.sh"
printf 'Read ../shared/reference/lab.md first.\n' > "$t/docs/c.md"
printf '/* checked in the order of §4.6 */\n' > "$t/storage/d.h"
printf '# the targets of Issue#14\n' > "$t/storage/e.am"
# Citations we use, which must pass.
printf '/* (docs/openvmm-compat.md §4.6) */\n/* the order of §4.6 */\n' > "$t/storage/ok1.c"
printf '/* Content-Range (RFC 9110 §14.4); SPC-4 §5.9 */\n' > "$t/storage/ok2.c"
printf 'See https://docs.python.org/3/reference/ and docs/testing.md.\n' > "$t/docs/ok3.md"
printf '/* libcurl before 8.1.0 (curl issue 11101) */\n' > "$t/storage/ok4.c"
printf 'The goals of issue 14 were met.\n' > "$t/ok5.md"
# Skipped: fixtures and build output.
printf 'reference/nbd.md\n' > "$t/tests/fuzz/regress/x/crash"
printf 'reference/nbd.md\n' > "$t/build/x/config.log"

if /usr/bin/python3 -I "$tmpdir/check.py" "$t" > "$tmpdir/bad" 2>&1; then
	cat "$tmpdir/bad" >&2; fail "outside citations passed"
fi
for want in 'OUTSIDE storage/a.c:1:' 'OUTSIDE storage/b.sh:1:' 'OUTSIDE docs/c.md:1:' \
		'BARE-§  storage/d.h:1:' 'ISSUE   storage/e.am:1:' 'no-outside-refs: 5 problem(s)'; do
	grep -qF "$want" "$tmpdir/bad" ||
		{ cat "$tmpdir/bad" >&2; fail "not reported: $want"; }
done
# Exactly those five: nothing in the ok* files, the fixture or the build
# directory.
if grep -q 'ok[1-5]\|regress\|build/' "$tmpdir/bad"; then
	cat "$tmpdir/bad" >&2; fail "a citation we use, a fixture or build output was flagged"
fi
