#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-blob.sh: 1 MiB sequential reads of a blob: disk from a local nginx
# (the issue's target: >= 500 MiB/s with parallel requests), next to curl
# fetching the same file, for scale. Not a pass/fail test: it prints the
# numbers and whether the target was met.
#
#   tests/bench/bench-blob.sh [SIZE_MIB] [SECONDS]
#
# Environment: DISKSTACK (the binary; default ./diskstack), NGINX_WORKERS
# (default 2), IODEPTH (default 32), KEEP=1 to keep the temporary directory.
set -e

top=$(cd "$(dirname "$0")/../.." && pwd)
size_mib=${1:-512}
secs=${2:-10}
bin=${DISKSTACK:-./diskstack}
[ -x "$bin" ] || { echo "bench-blob: $bin not found (set DISKSTACK)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-blob.XXXXXX")
nginx_pid=
cleanup() {
	[ -z "$nginx_pid" ] || kill "$nginx_pid" 2>/dev/null || true
	[ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$tmp/www"
dd if=/dev/urandom of="$tmp/www/disk.img" bs=1M count="$size_mib" 2>/dev/null
port=$(NGINX_PARENT_PID=$$ sh "$top/tests/http/nginx-start.sh" "$tmp/nginx" "$tmp/www" \
	"${NGINX_WORKERS:-2}")
nginx_pid=$(cat "$tmp/nginx/nginx.pid")
url=http://127.0.0.1:$port/disk.img
# Warm the page cache so both runs read from memory.
cat "$tmp/www/disk.img" >/dev/null

echo "bench-blob: ${size_mib} MiB blob, nginx with ${NGINX_WORKERS:-2} workers on 127.0.0.1:$port"
if command -v curl >/dev/null 2>&1; then
	curl_bps=$(curl -s -o /dev/null -w '%{speed_download}' "$url")
	echo "curl, one stream:  $(awk -v b="$curl_bps" 'BEGIN { printf "%.0f MiB/s", b / 1048576 }')"
fi

out=$("$bin" bench "blob:flat:$url" --rw read --bs 1M --iodepth "${IODEPTH:-32}" \
	--time "${secs}s" --quiet --json)
mibs=$(printf '%s\n' "$out" | sed -n 's/.*"read": *{[^}]*"mib_per_s": *\([0-9.]*\).*/\1/p')
[ -n "$mibs" ] || mibs=$(printf '%s\n' "$out" | grep -o '"mib_per_s": *[0-9.]*' | head -n1 | grep -o '[0-9.]*$')
echo "diskstack bench blob:flat (bs 1M, iodepth ${IODEPTH:-32}): ${mibs} MiB/s"
echo "$out" > "$tmp/bench.json"
if awk -v m="$mibs" 'BEGIN { exit !(m >= 500) }'; then
	echo "target >= 500 MiB/s: met"
else
	echo "target >= 500 MiB/s: NOT met"
fi
