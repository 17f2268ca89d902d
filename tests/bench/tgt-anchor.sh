#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tgt-anchor.sh: libiscsi's conformance suite against Debian's tgt, the
# peer target diskstack's iSCSI target is compared with
# (docs/testing-iscsi.md). Not part of make check: it measures tgt, not us.
#
#   tests/bench/tgt-anchor.sh [OUT]
#
# Runs tests/integration/iscsi-cu.sh (one iscsi-test-cu process per suite)
# on four LUs of one tgtd on 127.0.0.1: plain, thin (thin_provisioning=1),
# removable (removable=1) and read-only (readonly=1), each a $SIZE file
# (default 64M) in /dev/shm, then prints the per-suite table of all four.
# The logs stay in OUT/tgt-<flavour> (default a new directory under
# $TMPDIR). With OURS=DIR (the ISCSI_CU_KEEP directory of
# tests/integration/test-iscsi-conformance.sh) it also prints our results
# next to tgt's, flavour by flavour.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tgt-functions.sh"
for t in tgtd tgtadm iscsi-test-cu; do
	command -v "$t" >/dev/null || { echo "tgt-anchor: $t not found (tools/quickstart.sh deps)" >&2; exit 77; }
done

out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tgt-anchor.XXXXXX")}
mkdir -p "$out"
size=${SIZE:-64M}
shm=$(mktemp -d /dev/shm/tgt-anchor.XXXXXX)
port=$(/usr/bin/python3 -I -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'tgt_stop; rm -rf "$shm"' EXIT

tgt_start "$out" "$port" || exit 1
flavours="plain thin removable readonly"
tid=0
for f in $flavours; do
	tid=$((tid + 1))
	truncate -s "$size" "$shm/$f.img"
	case $f in
	plain) params= ;;
	thin) params=thin_provisioning=1 ;;
	removable) params=removable=1 ;;
	readonly) params=readonly=1 ;;
	esac
	tgt_lun "$tid" "iqn.2024-01.org.diskstack.anchor:$f" 1 "$shm/$f.img" "$params" || exit 1
done

echo "tgt $(dpkg-query -W -f='${Version}' tgt 2>/dev/null), libiscsi-bin" \
	"$(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null), LUs of $size in /dev/shm," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
dirs=()
for f in $flavours; do
	sel=()
	[ "$f" = readonly ] && sel=(-t @readonly)
	"$top/tests/integration/iscsi-cu.sh" -o "$out/tgt-$f" -l "tgt-$f" "${sel[@]}" \
		"iscsi://127.0.0.1:$port/iqn.2024-01.org.diskstack.anchor:$f/1" > "$out/tgt-$f.summary"
	grep '^TOTAL' "$out/tgt-$f.summary"
	dirs+=("$out/tgt-$f")
done
echo "tgtd CPU: $(awk '{ print ($14 + $15) / 100 }' "/proc/$(tgt_pid)/stat") s"
echo
/usr/bin/python3 -I "$top/tests/integration/iscsi-cu-summary.py" "${dirs[@]}"
if [ -n "${OURS:-}" ]; then
	for f in $flavours; do
		[ -d "$OURS/$f" ] || continue
		echo
		echo "## $f: tgt vs diskstack"
		/usr/bin/python3 -I "$top/tests/integration/iscsi-cu-summary.py" "$out/tgt-$f" "$OURS/$f"
	done
fi
echo
echo "logs: $out (failed and skipped tests with their reasons in tgt-<flavour>.summary)"
