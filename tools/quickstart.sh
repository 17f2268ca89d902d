#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# quickstart.sh: one command from a fresh Debian bookworm machine to a built
# and tested diskstack.
#
#   tools/quickstart.sh serve [SPEC]
#                               install what is missing, build, and serve
#                               SPEC (default mem:1G) as NBD export "" on
#                               127.0.0.1:10809 and /tmp/diskstack.sock,
#                               printing how to connect; Ctrl-C stops it
#   tools/quickstart.sh test    install what is missing, build (gcc -Werror,
#                               clang -Werror, ASan+UBSan), run every test
#                               suite, exit non-zero on any failure
#   tools/quickstart.sh build   install what is missing and build
#   tools/quickstart.sh deps    only install what is missing
#
# Environment: JOBS (default: number of CPUs), QUICKSTART_PORT and
# QUICKSTART_SOCKET (serve), QUICKSTART_SKIP_VALGRIND=1,
# QUICKSTART_SKIP_ASAN=1, QUICKSTART_SKIP_CLANG=1 to leave a suite out
# (each skip is reported in the summary).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${JOBS:-$(nproc)}

# Debian packages the build and the tests need.
build_pkgs=(build-essential autoconf automake pkg-config clang
	liburing-dev libssl-dev libsqlite3-dev libcurl4-openssl-dev libnbd-dev libcmocka-dev)
test_pkgs=(valgrind python3 sqlite3 libnbd-bin nbdkit fio qemu-utils util-linux e2fsprogs
	python3-libnbd fuse3 gnutls-bin openssl)

say() { printf '\033[1mquickstart:\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

install_deps() {
	local missing=() p
	for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		say "all packages present"
		return
	fi
	[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root or install them"
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

autogen() {
	if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ] ||
		[ "$top/Makefile.am" -nt "$top/Makefile.in" ]; then
		say "autoreconf"
		(cd "$top" && autoreconf -fi >/dev/null 2>&1) || (cd "$top" && autoreconf -fi)
	fi
}

# configure_build DIR [configure args...]: an out-of-tree build in $top/DIR.
configure_build() {
	local dir=$1; shift
	mkdir -p "$top/$dir"
	if [ ! -f "$top/$dir/Makefile" ] || [ "$top/configure" -nt "$top/$dir/Makefile" ]; then
		say "configure $dir: $*"
		(cd "$top/$dir" && "$top/configure" "$@" >config.out 2>&1) ||
			{ cat "$top/$dir/config.out" >&2; die "configure failed in $dir"; }
	fi
	say "make $dir"
	make -C "$top/$dir" -j"$jobs" >"$top/$dir/make.out" 2>&1 ||
		{ tail -n 60 "$top/$dir/make.out" >&2; die "build failed in $dir"; }
}

# Totals over the test-suite logs of one run of make check.
passed=0 failed=0 skipped=0 suites_failed=()
count_results() {
	local log=$1 p f s x e
	p=$(sed -n 's/^# PASS: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
	f=$(sed -n 's/^# FAIL: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
	s=$(sed -n 's/^# SKIP: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
	x=$(sed -n 's/^# XPASS: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
	e=$(sed -n 's/^# ERROR: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0} + ${x:-0} + ${e:-0}))
	skipped=$((skipped + ${s:-0}))
}

# run_suite NAME DIR MAKE-ARGS...: runs make check-like targets, keeps going.
run_suite() {
	local name=$1 dir=$2; shift 2
	local out="$top/$dir/$name.out"
	say "suite $name ($dir: make $*)"
	if make -C "$top/$dir" -j"$jobs" "$@" >"$out" 2>&1; then
		grep -E '^# (TOTAL|PASS|SKIP|FAIL|XFAIL|XPASS|ERROR):' "$out" | tr '\n' ' ' >&2; echo >&2
	else
		suites_failed+=("$name")
		grep -E '^(FAIL|ERROR|XPASS):' "$out" >&2 || true
		for log in $(grep -lE '^(not ok|FAIL)' "$top/$dir"/tests/*/*.log 2>/dev/null); do
			echo "---- $log" >&2; tail -n 40 "$log" >&2
		done
		tail -n 30 "$out" >&2
	fi
	count_results "$out"
}

cmd_test() {
	install_deps
	autogen
	configure_build build --enable-werror
	run_suite check build check

	if [ "${QUICKSTART_SKIP_VALGRIND:-0}" = 1 ]; then
		say "valgrind suite skipped (QUICKSTART_SKIP_VALGRIND=1)"
	else
		run_suite valgrind build check-valgrind
	fi
	if [ "${QUICKSTART_SKIP_CLANG:-0}" = 1 ]; then
		say "clang build skipped (QUICKSTART_SKIP_CLANG=1)"
	else
		configure_build build-clang --enable-werror CC=clang
	fi
	if [ "${QUICKSTART_SKIP_ASAN:-0}" = 1 ]; then
		say "ASan+UBSan suite skipped (QUICKSTART_SKIP_ASAN=1)"
	else
		configure_build build-asan --enable-werror --enable-sanitizers CC=clang
		run_suite asan build-asan check
	fi

	echo "diskstack: $passed passed, $failed failed, $skipped skipped"
	if [ ${#suites_failed[@]} -gt 0 ] || [ "$failed" -gt 0 ]; then
		say "FAILED suites: ${suites_failed[*]:-none} ($failed failed tests)"
		exit 1
	fi
	say "all suites passed"
}

cmd_serve() {
	local spec=${1:-mem:1G} port=${QUICKSTART_PORT:-10809} sock=${QUICKSTART_SOCKET:-/tmp/diskstack.sock}
	install_deps
	autogen
	configure_build build --enable-werror
	cat >&2 <<EOF

diskstack is serving '$spec' as NBD export "" on 127.0.0.1:$port and $sock.
Connect with:
  nbdinfo nbd://127.0.0.1:$port
  nbdinfo --map 'nbd+unix:///?socket=$sock'
  qemu-img info 'nbd+unix:///?socket=$sock'
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' nbd://127.0.0.1:$port
  fio --name=t --ioengine=nbd --uri='nbd+unix:///?socket=$sock' --rw=randrw --bs=4k --iodepth=32 --size=256M
  nbdcopy 'nbd+unix:///?socket=$sock' disk.raw
Ctrl-C stops the server (in-flight requests finish, the export is flushed).

EOF
	exec "$top/build/diskstack" serve -i 127.0.0.1 -p "$port" -U "$sock" "$spec"
}

case "${1:-}" in
serve) shift; cmd_serve "$@" ;;
test) cmd_test ;;
build) install_deps; autogen; configure_build build --enable-werror ;;
deps) install_deps ;;
-h|--help|help|"")
	sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'
	[ -n "${1:-}" ] || exit 2 ;;
*) echo "quickstart.sh: unknown command '$1' (try --help)" >&2; exit 2 ;;
esac
