#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench-decorators.sh: the decorator benchmarks (results in docs/decorator-*.md; not pass/fail).
#
#   tests/bench/bench-decorators.sh [DISKSTACK]
#
# 1. delay:0 over mem: against bare mem: (4 KiB random reads at iodepth 32,
#    and 64 KiB sequential reads of written data): the ratio should be
#    within 5% of 1.
# 2. crypt: over mem: at 64 KiB sequential reads and writes, one thread,
#    against `openssl speed -evp aes-256-xts` at the matching unit size:
#    512-byte sectors (mem:) and 4096-byte sectors (a RAM diff layer over a
#    loop device with 4 KiB sectors, which needs root; skipped otherwise).
#    Ratios are printed both per CPU second (what `openssl speed` reports by
#    default; the fair figure on a shared machine) and per wall-clock second
#    (against `openssl speed -elapsed`), and against the bound set by the
#    bare RAM disk's own cost (1 / (1/openssl + 1/mem)), which bounds the
#    copy path: there a read is a copy out of RAM plus a decryption, a write
#    an encryption plus a copy into RAM. The default (fused) path decrypts
#    out of the RAM pages / encrypts into them in one pass.
#    The EVP path (DISKSTACK_CRYPT_EVP=1) and the copy path
#    (DISKSTACK_CRYPT_NOFUSE=1: a copy out of / into the RAM pages plus the
#    cipher over the caller's buffer or a staging buffer, which is what crypt
#    did before the fused path) are measured too. The fused path is also
#    measured paired with `openssl speed` run by run (median of the per-run
#    ratios, which cancels drift of the machine between the two medians),
#    and over a 1 MiB disk that stays in L2, as `openssl speed` ciphers
#    one buffer in L1: that row isolates the cost of the stack from the
#    cost of reading the data from DRAM, whose floor xts-memfloor.c
#    measures (the same OpenSSL calls reading a 256 MiB buffer against
#    one buffer in L1; needs a C compiler and libssl-dev).
#
# Each figure is the median of $RUNS runs (default 3) of $TIME (default 3s).
# SECTIONS (default "delay crypt") and SECTORS (default "512 4096") choose
# what runs, so that one invocation can stay short on a shared machine.
# Needs /usr/bin/python3 (JSON) and openssl.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ds=${1:-${DISKSTACK:-}}
if [ -z "$ds" ]; then
	for c in "$top/build/diskstack" "$top/diskstack"; do
		[ -x "$c" ] && { ds=$c; break; }
	done
fi
[ -n "$ds" ] && [ -x "$ds" ] || { echo "usage: $0 [path/to/diskstack]" >&2; exit 2; }
py=/usr/bin/python3
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 2; }
[ -x $py ] || { echo "$0: $py not found" >&2; exit 2; }
runs=${RUNS:-3}
time=${TIME:-3s}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-decorators.XXXXXX")
loopdev=
loopdev2=
shmfile=
cleanup() {
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
	[ -n "$loopdev2" ] && losetup -d "$loopdev2" 2>/dev/null || true
	[ -n "$shmfile" ] && rm -f "$shmfile" "$shmfile.small"
	rm -rf "$tmp"
}
trap cleanup EXIT
key=$tmp/k.bin
while :; do
	head -c 64 /dev/urandom > "$key"
	[ "$(head -c 32 "$key" | od -An -tx1)" != "$(tail -c 32 "$key" | od -An -tx1)" ] && break
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench_one SPEC WHAT ARGS...: one run; WHAT is iops, cpu_iops (requests
# per CPU second), wall_mbs or cpu_mbs (bytes per CPU second).
bench_one() {
	local spec=$1 what=$2; shift 2
	"$ds" bench "$spec" --time "$time" --json -q "$@" |
		$py -I -c '
import json, sys
r = json.load(sys.stdin)
b, n, c = r["total"]["bytes"], r["total"]["ops"], r["cpu_s"]
print({"iops": r["iops"], "cpu_iops": n / c if c > 0 else 0,
       "wall_mbs": b / r["elapsed_s"] / 1e6,
       "cpu_mbs": b / c / 1e6 if c > 0 else 0}[sys.argv[1]])' "$what"
}

# bench_fig SPEC WHAT ARGS...: median over $runs runs.
bench_fig() {
	for _ in $(seq "$runs"); do
		bench_one "$@"
	done | median
}

# openssl_fig BYTES [-elapsed]: median MB/s of openssl speed at BYTES.
openssl_fig() {
	local bytes=$1; shift
	for _ in $(seq "$runs"); do
		openssl speed -evp aes-256-xts -bytes "$bytes" -seconds 3 "$@" 2>/dev/null |
			awk '/^AES-256-XTS/ { sub(/k$/, "", $2); print $2 / 1000 }'
	done | median
}

# paired_ratio UNIT SPEC RW: per run, `openssl speed` and then the crypt
# bench, one right after the other; prints the median of the per-run
# ratios (cancels the machine's drift between the two medians above).
paired_ratio() {
	local unit=$1 spec=$2 rw=$3 secs=${time%s} o c
	case $secs in ''|*[!0-9]*) secs=3 ;; esac
	for _ in $(seq "$runs"); do
		o=$(openssl speed -evp aes-256-xts -bytes "$unit" -seconds "$secs" 2>/dev/null |
			awk '/^AES-256-XTS/ { sub(/k$/, "", $2); print $2 / 1000 }')
		c=$(bench_one "$spec" cpu_mbs --rw "$rw" --bs 64K --iodepth 1 --prefill)
		ratio "$c" "$o"
	done | median
}

ratio() { $py -I -c "import sys; print('%.3f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
bound() { $py -I -c "import sys; a, b = map(float, sys.argv[1:]); print('%.0f' % (1 / (1 / a + 1 / b)))" "$1" "$2"; }

echo "diskstack: $ds"
echo "openssl:   $(openssl version)"
echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs:      median of $runs x $time"
echo

sections=${SECTIONS:-delay crypt}
sectors=${SECTORS:-512 4096}
want() { case " $1 " in *" $2 "*) return 0;; esac; return 1; }

if want "$sections" delay; then
echo "== delay:0 over mem: vs mem: (ratio delay/mem; target >= 0.95)"
echo "   requests per CPU second (and per wall second), runs interleaved"
for t in "randread 4K 32" "read 64K 1"; do
	set -- $t
	extra=()
	[ "$1" = read ] && extra=(--prefill)
	: > "$tmp/m.cpu"; : > "$tmp/d.cpu"; : > "$tmp/m.wall"; : > "$tmp/d.wall"
	for _ in $(seq "$runs"); do
		bench_one mem:256M cpu_iops --rw "$1" --bs "$2" --iodepth "$3" "${extra[@]}" >> "$tmp/m.cpu"
		bench_one delay:0:mem:256M cpu_iops --rw "$1" --bs "$2" --iodepth "$3" "${extra[@]}" >> "$tmp/d.cpu"
		bench_one mem:256M iops --rw "$1" --bs "$2" --iodepth "$3" "${extra[@]}" >> "$tmp/m.wall"
		bench_one delay:0:mem:256M iops --rw "$1" --bs "$2" --iodepth "$3" "${extra[@]}" >> "$tmp/d.wall"
	done
	m=$(median < "$tmp/m.cpu"); d=$(median < "$tmp/d.cpu")
	mw=$(median < "$tmp/m.wall"); dw=$(median < "$tmp/d.wall")
	printf '%-8s bs=%-3s iodepth=%-2s mem: %9.0f/cpu-s  delay:0: %9.0f/cpu-s  ratio %s  (wall: %9.0f vs %9.0f IOPS, %s)\n' \
		"$1" "$2" "$3" "$m" "$d" "$(ratio "$d" "$m")" "$mw" "$dw" "$(ratio "$dw" "$mw")"
done
echo
fi

# crypt_row LABEL UNIT SPEC_MEM SPEC_CRYPT
crypt_row() {
	local label=$1 unit=$2 smem=$3 scrypt=$4 rw
	local ssl_cpu ssl_wall
	ssl_cpu=$(openssl_fig "$unit")
	ssl_wall=$(openssl_fig "$unit" -elapsed)
	printf '%s: openssl speed -evp aes-256-xts -bytes %s: %.0f MB/s per CPU s, %.0f MB/s wall\n' \
		"$label" "$unit" "$ssl_cpu" "$ssl_wall"
	for rw in read write; do
		local mcpu ccpu cwall ecpu ncpu b
		mcpu=$(bench_fig "$smem" cpu_mbs --rw $rw --bs 64K --iodepth 1 --prefill)
		ccpu=$(bench_fig "$scrypt" cpu_mbs --rw $rw --bs 64K --iodepth 1 --prefill)
		cwall=$(bench_fig "$scrypt" wall_mbs --rw $rw --bs 64K --iodepth 1 --prefill)
		ecpu=$(DISKSTACK_CRYPT_EVP=1 bench_fig "$scrypt" cpu_mbs --rw $rw --bs 64K --iodepth 1 --prefill)
		ncpu=$(DISKSTACK_CRYPT_NOFUSE=1 bench_fig "$scrypt" cpu_mbs --rw $rw --bs 64K --iodepth 1 --prefill)
		b=$(bound "$ssl_cpu" "$mcpu")
		printf '  %-5s crypt %6.0f MB/s/cpu (%s of openssl; wall %6.0f MB/s, %s of -elapsed)\n' \
			$rw "$ccpu" "$(ratio "$ccpu" "$ssl_cpu")" "$cwall" "$(ratio "$cwall" "$ssl_wall")"
		printf '        EVP path %6.0f MB/s/cpu (%s of openssl); copy path (NOFUSE) %6.0f MB/s/cpu (%s of openssl)\n' \
			"$ecpu" "$(ratio "$ecpu" "$ssl_cpu")" "$ncpu" "$(ratio "$ncpu" "$ssl_cpu")"
		printf '        bare RAM disk %6.0f MB/s/cpu -> copy-path bound 1/(1/openssl+1/RAM) %s MB/s/cpu, copy path at %s of it\n' \
			"$mcpu" "$b" "$(ratio "$ncpu" "$b")"
		printf '        paired with openssl run by run: fused crypt at %s of openssl (median of per-run ratios)\n' \
			"$(paired_ratio "$unit" "$scrypt" $rw)"
	done
}

# crypt_cached_row LABEL UNIT SPEC_CRYPT: the fused path over a 1 MiB disk,
# which stays in L2 as `openssl speed`'s one buffer stays in L1: what is
# left is the cost of the stack, not of reading the data from DRAM. Then
# the floor that DRAM sets: the same OpenSSL calls, once in one buffer and
# once reading a 256 MiB buffer sequentially (xts-memfloor.c).
crypt_cached_row() {
	local label=$1 unit=$2 scrypt=$3 rw f
	for rw in read write; do
		printf '%s, L2-resident 1 MiB disk: %-5s paired with openssl: fused crypt at %s of openssl\n' \
			"$label" $rw "$(paired_ratio "$unit" "$scrypt" $rw)"
	done
	if [ -x "$tmp/xts-memfloor" ]; then
		f=$(for _ in $(seq "$runs"); do "$tmp/xts-memfloor" "$unit" 256 "${time%s}" | awk '{print $3}'; done | median)
		printf '%s: DRAM floor: OpenSSL decrypting from a 256 MiB buffer runs at %s of the same calls on one buffer (xts-memfloor)\n' \
			"$label" "$f"
	fi
}

want "$sections" crypt || exit 0
${CC:-cc} -O2 -o "$tmp/xts-memfloor" "$top/tests/bench/xts-memfloor.c" -lcrypto 2>/dev/null ||
	echo "(xts-memfloor.c does not build here: no DRAM floor line)"
echo "== crypt: over RAM, 64 KiB sequential, 1 thread (targets: >= 0.70 of openssl at 512, >= 0.80 at 4096)"
if want "$sectors" 512; then
	crypt_row "512-byte sectors" 512 mem:256M "crypt:xts-aes-256:$key:mem:256M"
	crypt_cached_row "512-byte sectors" 512 "crypt:xts-aes-256:$key:mem:1M"
fi
want "$sectors" 4096 || exit 0
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
	shmfile=/dev/shm/bench-decorators.$$.img
	truncate -s 256M "$shmfile"
	if loopdev=$(losetup --sector-size 4096 -f --show "$shmfile" 2>/dev/null); then
		crypt_row "4096-byte sectors" 4096 "memdiff:file:$loopdev" \
			"crypt:xts-aes-256:$key:memdiff:file:$loopdev"
		truncate -s 1M "$shmfile.small"
		if loopdev2=$(losetup --sector-size 4096 -f --show "$shmfile.small" 2>/dev/null); then
			crypt_cached_row "4096-byte sectors" 4096 \
				"crypt:xts-aes-256:$key:memdiff:file:$loopdev2"
		fi
	else
		loopdev=
		echo "4096-byte sectors: cannot set up a 4K loop device, skipped"
	fi
else
	echo "4096-byte sectors: needs root and losetup (a 4K-sector RAM disk is memdiff: over a 4K loop device), skipped"
fi
