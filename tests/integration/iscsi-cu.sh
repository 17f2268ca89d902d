#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# iscsi-cu.sh: runs libiscsi's conformance suite (iscsi-test-cu, Debian
# libiscsi-bin) against one iSCSI logical unit, whatever target serves it,
# and prints pass/fail/skip per suite (iscsi-cu-summary.py).
#
#   iscsi-cu.sh -o DIR [-l LABEL] [-t SUITE[.TEST]]... [-e EXPECT -f FLAVOUR]
#               [-T SECONDS] [-i IQN] [-I IQN] URL
#
#   URL     iscsi://HOST:PORT/TARGET-IQN/LUN (the LU is written: --dataloss)
#   -o DIR  where the logs go: list.txt (the tool's --list), one
#           <Suite>.log and <Suite>.rc per suite, label
#   -t SEL  which tests: fnmatch globs on the suite and, optionally, the
#           test name (default every suite of family ALL); may repeat.
#           "@readonly" is the set for a write-protected LU: the tool does
#           not adapt its write tests to one, so only ReadOnly, the
#           *.WriteProtect tests and the suites that do not write
#   -e/-f   check the results against an expectations file for FLAVOUR
#           (iscsi-cu-expected.txt): exit 1 on any failure or unexpected
#           skip; without -e the exit status is 0 once every suite ran
#   -T      timeout per suite process (default $ISCSI_CU_TIMEOUT or 120 s)
#   -i/-I   the two initiator names (the reservation tests log in with
#           both, as two I_T nexuses)
#
# Why one process per suite (docs/testing-iscsi.md): iscsi-test-cu 1.19
# keeps a PDU rewrite hook installed process-wide when
# CompareAndWrite.InvalidDataOutSize returns early, which corrupts every
# later 16-byte CDB of the same process; a crash or a hang (the tool has no
# per-command timeout) then also costs one suite, not the rest. Why -V:
# some tests skip silently (StartStopUnit.PwrCnd/NoLoej, NoMedia.NoMediaSBC
# on a fixed LU) and print their [SKIPPED] line only in verbose mode.
# MultipathIO gets the URL twice: two sessions to the same LU are two paths.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out= label= expect= flavour=
sels=()
tmo=${ISCSI_CU_TIMEOUT:-120}
iqn1=iqn.2024-01.org.diskstack:cu-initiator-1
iqn2=iqn.2024-01.org.diskstack:cu-initiator-2

usage() { sed -n '6,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts o:l:t:e:f:T:i:I:h opt; do
	case $opt in
	o) out=$OPTARG ;;
	l) label=$OPTARG ;;
	t) sels+=("$OPTARG") ;;
	e) expect=$OPTARG ;;
	f) flavour=$OPTARG ;;
	T) tmo=$OPTARG ;;
	i) iqn1=$OPTARG ;;
	I) iqn2=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] && [ -n "$out" ] || usage
url=$1
[ ${#sels[@]} -gt 0 ] || sels=('*')
for i in "${!sels[@]}"; do
	[ "${sels[$i]}" = @readonly ] || continue
	sels[$i]="ReadOnly Read[0-9]* ReadCapacity* Inquiry ModeSense6 TestUnitReady Verify* *.WriteProtect"
done
command -v iscsi-test-cu >/dev/null || { echo "iscsi-cu.sh: iscsi-test-cu not found (libiscsi-bin)" >&2; exit 77; }

mkdir -p "$out"
echo "${label:-$url}" > "$out/label"
iscsi-test-cu --list > "$out/list.txt" || { echo "iscsi-cu.sh: iscsi-test-cu --list failed" >&2; exit 99; }

# Expands the selections into "Suite TESTGLOB" pairs, one per suite, in the
# tool's own order (a suite named by two selections runs once, with the
# first).
plan=$(awk -F. -v sels="${sels[*]}" '
	function glob2re(g) { gsub(/[.+^$(){}|\\]/, "\\\\&", g); gsub(/\*/, ".*", g); gsub(/\?/, ".", g); return "^" g "$" }
	BEGIN { n = split(sels, s, " ") }
	$1 == "ALL" && NF == 3 {
		for (i = 1; i <= n; i++) {
			sg = s[i]; tg = "*"
			if (index(sg, ".")) { tg = substr(sg, index(sg, ".") + 1); sg = substr(sg, 1, index(sg, ".") - 1) }
			if ($2 ~ glob2re(sg) && $3 ~ glob2re(tg) && !($2 in done)) { done[$2] = tg; order[++k] = $2 }
		}
	}
	END { for (i = 1; i <= k; i++) print order[i], done[order[i]] }' "$out/list.txt")
[ -n "$plan" ] || { echo "iscsi-cu.sh: no test matches ${sels[*]}" >&2; exit 2; }
printf '%s\n' "$plan" > "$out/plan.txt"

t0=$(date +%s)
while read -r suite tests; do
	args=("$url")
	[ "$suite" = MultipathIO ] && args+=("$url")
	sel=ALL.$suite
	[ "$tests" = '*' ] || sel=$sel.$tests
	timeout --kill-after=5 "$tmo" iscsi-test-cu -V --dataloss -i "$iqn1" -I "$iqn2" \
		--test="$sel" "${args[@]}" </dev/null >"$out/$suite.log" 2>&1
	echo $? > "$out/$suite.rc"
done <<< "$plan"
echo "$(( $(date +%s) - t0 ))" > "$out/seconds"

check=()
[ -n "$expect" ] && check=(--expect "$expect" --flavour "${flavour:?-f FLAVOUR goes with -e}")
/usr/bin/python3 -I "$here/iscsi-cu-summary.py" --tests "${check[@]}" "$out"
