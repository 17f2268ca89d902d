# SPDX-License-Identifier: MIT
# bench-functions.sh: what the NBD benchmarks (bench-nbd.sh,
# bench-nbdkit-plugin.sh, ab-nbd.sh) share (bash; sourced).
#
#   bench_stop_servers          SIGTERM to every server in the associative
#                               array PID (name -> pid), up to 5 s for each
#                               to exit, then SIGKILL
#   bench_fill PROG NAME SOCK SIZE   write SIZE of the export on the Unix
#                               socket SOCK once, sequentially, so that
#                               reads hit allocated data; on failure says
#                               "PROG: fill of NAME failed" and exits 1

bench_stop_servers()
{
	local s
	for s in "${!PID[@]}"; do
		kill "${PID[$s]}" 2>/dev/null
	done
	for s in "${!PID[@]}"; do
		for _ in $(seq 50); do kill -0 "${PID[$s]}" 2>/dev/null || break; sleep 0.1; done
		kill -9 "${PID[$s]}" 2>/dev/null
	done
}

bench_fill()
{
	fio --name=fill --ioengine=nbd --uri="nbd+unix:///?socket=$3" --rw=write --bs=1M \
		--iodepth=8 --size="$4" --output-format=terse >/dev/null ||
		{ echo "$1: fill of $2 failed" >&2; exit 1; }
}
