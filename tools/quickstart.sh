#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# quickstart.sh: one command from a fresh Debian bookworm machine to a built
# and tested diskstack.
#
#   tools/quickstart.sh test    install what is missing, build (gcc, clang,
#                               no optional libs, ASan+UBSan, libFuzzer), run
#                               every test suite, exit non-zero on any failure
#   tools/quickstart.sh serve   install, build, and serve the default disk
#                               (mem:1G as export "") over NBD on
#                               127.0.0.1:10809 and a Unix socket
#   tools/quickstart.sh build   install what is missing and build
#   tools/quickstart.sh deps    only install what is missing
#
# Environment: JOBS (default: number of CPUs), QUICKSTART_SKIP_VALGRIND=1,
# _SKIP_ASAN=1, _SKIP_CLANG=1, _SKIP_MINIMAL=1, _SKIP_FUZZ=1, _SKIP_VM=1
# (each QUICKSTART_) to leave a suite out (each skip is reported in the
# summary); FUZZ_SECONDS (default 30) per libFuzzer target. The VM suite
# (make check-vm: ublk and the kernel NBD client in QEMU guests) caches its
# kernel downloads in ${XDG_CACHE_HOME:-/var/cache}/diskstack-vm.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${JOBS:-$(nproc)}

# Debian packages the build and the tests need.
# One package per line, so that branches adding packages merge cleanly.
build_pkgs=(
	build-essential
	autoconf
	automake
	pkg-config
	clang
	libclang-rt-14-dev
	liburing-dev
	libssl-dev
	libsqlite3-dev
	libcurl4-openssl-dev
	libnbd-dev
	libcmocka-dev
	libjansson-dev
	nbdkit-plugin-dev
)
test_pkgs=(
	valgrind
	python3
	sqlite3
	libnbd-bin
	nbdkit
	fio
	qemu-utils
	util-linux
	e2fsprogs
	nginx
	python3-cryptography
	python3-libnbd
	fuse3
	gnutls-bin
	curl
	openssl
	libiscsi-bin
	tgt
	qemu-block-extra
	genisoimage
	libiscsi-dev
)
# tests/vm: QEMU guests running Debian's 6.12 and 6.1 kernels (ublk_drv.ko for
# 6.1 is built from linux-source-6.1 against the matching headers).
vm_pkgs=(
	qemu-system-x86
	busybox-static
	linux-source-6.1
	linux-headers-amd64
	kmod
	cpio
	xz-utils
	zstd
	nbd-client
	sg3-utils
	qemu-system-common
	nvme-cli
	flex
	bison
	bc
)

# tools/: fresh-machine-test.sh (a clean clone tested in a minimal chroot);
# tests/bench: perf for the syscall counts of ab-nbd.sh, passt for
# bench-nvme-tcp.sh's BENCH_NET=passt.
tool_pkgs=(
	git
	debootstrap
	linux-perf
	passt
)

say() { printf '\033[1mquickstart:\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

install_deps() {
	local missing=() p
	for p in "${build_pkgs[@]}" "${test_pkgs[@]}" "${vm_pkgs[@]}" "${tool_pkgs[@]}"; do
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
	# flock: several builds may share the machine (and its dpkg lock).
	local lock=()
	command -v flock >/dev/null && lock=(flock /tmp/apt.lock)
	"${lock[@]}" apt-get update -qq
	"${lock[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

# The test builds use every optional library (configure fails if one is
# missing rather than dropping its disk kinds), so that every test runs.
all_kinds=(--with-sqlite --with-curl --with-libnbd)

cmd_test() {
	install_deps
	# Every package the tests use is installed now: a missing program or
	# module is a broken set-up, not a skip (tests/integration/functions.sh).
	export DISKSTACK_STRICT_DEPS=1
	autogen
	configure_build build --enable-werror "${all_kinds[@]}"
	run_suite check build check

	if [ "${QUICKSTART_SKIP_VALGRIND:-0}" = 1 ]; then
		say "valgrind suite skipped (QUICKSTART_SKIP_VALGRIND=1)"
	else
		run_suite valgrind build check-valgrind
	fi
	if [ "${QUICKSTART_SKIP_CLANG:-0}" = 1 ]; then
		say "clang build skipped (QUICKSTART_SKIP_CLANG=1)"
	else
		configure_build build-clang --enable-werror CC=clang "${all_kinds[@]}"
	fi
	# The optional libraries left out: a build-only check (like clang's)
	# that the tree still builds without them.
	if [ "${QUICKSTART_SKIP_MINIMAL:-0}" = 1 ]; then
		say "build without optional libraries skipped (QUICKSTART_SKIP_MINIMAL=1)"
	else
		configure_build build-minimal --enable-werror --without-sqlite --without-curl \
			--without-libnbd
	fi
	if [ "${QUICKSTART_SKIP_ASAN:-0}" = 1 ]; then
		say "ASan+UBSan suite skipped (QUICKSTART_SKIP_ASAN=1)"
	else
		configure_build build-asan --enable-werror --enable-sanitizers CC=clang "${all_kinds[@]}"
		run_suite asan build-asan check
	fi
	if [ "${QUICKSTART_SKIP_FUZZ:-0}" = 1 ]; then
		say "fuzz suite skipped (QUICKSTART_SKIP_FUZZ=1)"
	else
		configure_build build-fuzz --enable-werror --enable-sanitizers --enable-fuzzing CC=clang \
			"${all_kinds[@]}"
		run_suite fuzz build-fuzz check-fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
	fi

	if [ "${QUICKSTART_SKIP_VM:-0}" = 1 ]; then
		say "VM suite skipped (QUICKSTART_SKIP_VM=1)"
	else
		run_suite vm build check-vm
	fi

	echo "diskstack: $passed passed, $failed failed, $skipped skipped"
	if [ ${#suites_failed[@]} -gt 0 ] || [ "$failed" -gt 0 ]; then
		say "FAILED suites: ${suites_failed[*]:-none} ($failed failed tests)"
		exit 1
	fi
	say "all suites passed"
}

cmd_serve() {
	install_deps
	autogen
	configure_build build --enable-werror
	local sock=${DISKSTACK_SOCKET:-/tmp/diskstack.sock}
	cat >&2 <<EOF2

diskstack is serving mem:1G (1 GiB in RAM, lost at exit) as export "" on
  nbd://127.0.0.1:10809/        and   nbd+unix:///?socket=$sock
Connect with, for example:
  nbdinfo nbd://127.0.0.1:10809/
  qemu-img info 'nbd+unix:///?socket=$sock'
  fio --name=t --ioengine=nbd --uri='nbd+unix:///?socket=$sock' --rw=randrw --bs=4k --iodepth=32 --size=1G
Stop it with Ctrl-C (requests in flight finish first).

EOF2
	exec "$top/build/diskstack" serve -i 127.0.0.1 -p 10809 -U "$sock" "$@" mem:1G
}

case "${1:-}" in
test) cmd_test ;;
serve) shift; cmd_serve "$@" ;;
build) install_deps; autogen; configure_build build --enable-werror ;;
deps) install_deps ;;
-h|--help|help|"")
	sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'
	[ -n "${1:-}" ] || exit 2 ;;
*) echo "quickstart.sh: unknown command '$1' (try --help)" >&2; exit 2 ;;
esac
