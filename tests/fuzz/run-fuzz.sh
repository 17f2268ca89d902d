#!/bin/bash
# SPDX-License-Identifier: MIT
# run-fuzz.sh NAME.fuzz: runs one libFuzzer target of tests/fuzz for
# $FUZZ_SECONDS (default 20) from its seeds, as an automake test (the
# LOG_COMPILER of `make check-fuzz`). Fails on any crash, leak, timeout or
# sanitizer report; the offending input is kept in $FUZZ_ARTIFACTS (default
# the build's tests/fuzz/artifacts/) and printed in hex. The seed corpus is
# rebuilt in a temporary directory each run: the source tree is never
# written. Inputs in tests/fuzz/regress/<target>/ (past findings) always run.
set -u
name=$(basename "$1" .fuzz)
src=$(cd "$(dirname "$0")" && pwd)
fuzzer=${abs_top_builddir:-.}/tests/fuzz/$name
secs=${FUZZ_SECONDS:-20}
# A fixed seed by default, so that a test run explores the same inputs each
# time (FUZZ_SEED=0 lets libFuzzer pick one).
seed=${FUZZ_SEED:-1}
art=${FUZZ_ARTIFACTS:-$(dirname "$fuzzer")/artifacts}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/corpus" "$tmp/seeds" "$art"

case $name in
fuzz-spec)
	i=0
	while IFS= read -r line; do
		i=$((i + 1))
		printf '%s' "$line" > "$tmp/seeds/s$i"
	done < "$src/spec-seeds.txt"
	dict=()
	;;
fuzz-vhdfooter)
	/usr/bin/python3 -I - "$tmp/seeds" <<'PY'
import struct, sys
def footer(size, typ=2):
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQ", f, 8, 2, 0x00010000, 0xffffffffffffffff)
    struct.pack_into(">QQ", f, 40, size, size)
    struct.pack_into(">I", f, 60, typ)
    s = (~sum(f)) & 0xffffffff
    struct.pack_into(">I", f, 64, s)
    return bytes(f)
d = sys.argv[1]
for n, (ln, sz, t) in enumerate([(1 << 20, (1 << 20) - 512, 2), (4096, 512, 2), (1024, 4096, 2),
                                 (8192, 4096, 3), (511, 0, 2)]):
    open("%s/v%d" % (d, n), "wb").write(struct.pack("<Q", ln) + footer(sz, t))
PY
	dict=()
	;;
fuzz-nbd-server)
	/usr/bin/python3 -I "$src/nbd-seeds.py" "$tmp/seeds"
	dict=(-dict="$src/nbd.dict")
	;;
fuzz-nbd-client)
	/usr/bin/python3 -I "$src/nbd-client-seeds.py" "$tmp/seeds"
	dict=(-dict="$src/nbd.dict")
	;;
fuzz-dbhd)
	sh "$src/dbhd-seeds.sh" "$tmp/seeds" || { echo "$name: cannot make the seeds" >&2; exit 99; }
	dict=()
	;;
fuzz-blob | fuzz-blob-reply)
	/usr/bin/python3 -I "$src/blob-seeds.py" "$tmp/all"
	mv "$tmp/all/${name#fuzz-}"/* "$tmp/seeds/"
	dict=(-dict="$src/${name#fuzz-}.dict")
	;;
fuzz-ublk-iod)
	/usr/bin/python3 -I "$src/ublk-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-iscsi-pdu)
	/usr/bin/python3 -I "$src/iscsi-seeds.py" "$tmp/seeds"
	dict=(-dict="$src/iscsi.dict")
	;;
fuzz-scsi-cdb)
	/usr/bin/python3 -I "$src/scsi-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-nvme-cmd)
	/usr/bin/python3 -I "$src/nvme-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-nvmf-pdu)
	/usr/bin/python3 -I "$src/nvmf-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-nvme-pci)
	/usr/bin/python3 -I "$src/nvme-pci-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-vhost-ring)
	/usr/bin/python3 -I "$src/vhost-seeds.py" "$tmp/seeds"
	dict=()
	;;
fuzz-ctl-request)
	i=0
	while IFS= read -r line; do
		i=$((i + 1))
		printf '%s' "$line" > "$tmp/seeds/c$i"
	done < "$src/ctl-seeds.txt"
	dict=(-dict="$src/ctl.dict")
	;;
fuzz-vhost-msg)
	/usr/bin/python3 -I "$src/vhost-msg-seeds.py" "$tmp/seeds"
	dict=()
	;;
*)
	echo "run-fuzz.sh: unknown fuzzer $name" >&2
	exit 99
	;;
esac
if [ -d "$src/regress/$name" ]; then
	cp "$src/regress/$name"/* "$tmp/seeds/" 2>/dev/null
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "$name: ${secs}s from $(ls "$tmp/seeds" | wc -l) seeds"
"$fuzzer" "${dict[@]}" -seed="$seed" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
	-print_final_stats=1 -artifact_prefix="$art/$name-" "$tmp/corpus" "$tmp/seeds" 2>&1 |
	grep -v '^#[0-9]' | tail -n 60
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	for f in "$art/$name"-*; do
		[ -f "$f" ] && { echo "---- $f"; od -A d -t x1 "$f" | head -n 40; }
	done
	echo "$name: FAILED (exit $rc)"
	exit 1
fi
exit 0
