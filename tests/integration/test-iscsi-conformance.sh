#!/bin/sh
# SPDX-License-Identifier: MIT
# test-iscsi-conformance.sh: libiscsi's conformance suite (iscsi-test-cu)
# against `diskstack serve --iscsi` on 127.0.0.1, one iscsi-test-cu process
# per suite (iscsi-cu.sh), with two initiator names, on each LU flavour:
#   plain      a raw file (in $tmpdir)
#   thin       mem: (UNMAP works, reads back zeroes: LBPME=1, LBPRZ=1)
#   removable  a removable disk (INQUIRY RMB=1), when the target offers one
#   readonly   mem: with ",ro" (MODE SENSE WP=1), the write-protect tests
# Every failure fails the test, and so does every skip that
# iscsi-cu-expected.txt does not list with the reason the standard lets us
# lack the feature. docs/testing-iscsi.md has the tables and tgt's numbers.
#
# LUs are small ($ISCSI_CU_SIZE, default 64M): WRITE SAME with 0 blocks
# writes to the end of the LU, so the run time grows with the size.
# ISCSI_CU_KEEP=DIR keeps the logs (tests/bench/tgt-anchor.sh OURS=DIR
# compares them with tgt's); ISCSI_CU_FLAVOURS picks flavours.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires iscsi-test-cu timeout
requires_python fnmatch
"$DISKSTACK" serve --help 2>&1 | grep -q -- '--iscsi' ||
	{ echo "$0: this diskstack has no iSCSI target (serve --iscsi), skipping"; exit 77; }

here=$(cd "$(dirname "$0")" && pwd)
size=${ISCSI_CU_SIZE:-64M}
out=${ISCSI_CU_KEEP:-$tmpdir/cu}
flavours=${ISCSI_CU_FLAVOURS:-plain thin removable readonly}
iqn=iqn.2024-01.org.diskstack:conformance

bad=0
for f in $flavours; do
	sel=
	case $f in
	# GetLBAStatus.UnmapSingle asks for LBA i+1 and wants the first
	# descriptor at i+LBPPB: right only with one logical block per
	# physical one, against SBC-3 (the first descriptor starts at the
	# STARTING LOGICAL BLOCK ADDRESS) on this 4096-byte-physical file.
	# It runs, and passes, on the mem: flavours (LBPPB 1).
	plain) spec="file:$tmpdir/plain.img;create=$size"; sel="-t GetLBAStatus.[SB]* -t *" ;;
	thin) spec="mem:$size" ;;
	removable) spec="mem:$size,removable" ;;
	readonly) spec="mem:$size,ro"; sel="-t @readonly" ;;
	*) fail "unknown flavour $f" ;;
	esac
	port=$(free_port)
	serve "srv_$f" --iscsi "127.0.0.1:$port" --target "$iqn" --lun "0=$spec"
	# $sel is options and their globs, split on spaces and never expanded
	set -f
	# shellcheck disable=SC2086
	"$here/iscsi-cu.sh" -o "$out/$f" -l "diskstack-$f" $sel -e "$here/iscsi-cu-expected.txt" \
		-f "$f" "iscsi://127.0.0.1:$port/$iqn/0" > "$tmpdir/$f.summary" 2>&1 || bad=1
	set +f
	serve_stop "srv_$f"
	grep -E '^(TOTAL|NOT OK|NOTE)' "$tmpdir/$f.summary" || cat "$tmpdir/$f.summary"
	if [ "$serve_status" -ne 0 ]; then
		echo "NOT OK diskstack serve ($f) exited with $serve_status after the suite"
		bad=1
	fi
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmpdir/srv_$f.log"; then
		grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmpdir/srv_$f.log" | head -n 60
		echo "NOT OK sanitizer report from the server ($f)"
		bad=1
	fi
done
if [ "$bad" -ne 0 ]; then
	for f in $flavours; do
		echo "---- $f"
		grep -E '^(\||FAIL|SKIP)' "$tmpdir/$f.summary"
	done
	fail "see the NOT OK lines above (ISCSI_CU_KEEP=DIR keeps the logs)"
fi
