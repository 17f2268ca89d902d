# SPDX-License-Identifier: MIT
# functions.sh: helpers sourced by every integration test
# (tests/integration/test-<area>-<aspect>.sh). POSIX sh.
#
#   requires CMD...            exit 77 (skip) unless every CMD is on $PATH
#   requires_python MOD[.ATTR]... skip unless /usr/bin/python3 -I imports
#                              each module (and finds ATTR in it)
#   skip MSG                   exit 77 with MSG, or fail under
#                              DISKSTACK_STRICT_DEPS=1 (see below)
#   requires_kind KIND...      exit 77 unless this diskstack was built with
#                              every disk KIND (a build-configuration skip,
#                              see below)
#   kind_missing KIND          the reason KIND is not in this build ("built
#                              without SQLite"), or nothing when it is
#   cleanup_fn CMD [ARGS...]   run CMD at exit (last registered runs first)
#   $tmpdir                    a per-test temporary directory, removed at exit
#   $DISKSTACK                 the diskstack binary
#   start_bg PIDFILE CMD...    start CMD in the background, record its pid
#   stop_bg PIDFILE            stop that process (TERM, then KILL) by its pid
#   expect_exit CODE CMD...    run CMD, fail unless it exits with CODE;
#                              its stderr is left in $tmpdir/stderr,
#                              its stdout in $tmpdir/stdout
#   expect_stderr TEXT         fail unless $tmpdir/stderr contains TEXT
#   fail MSG                   print MSG and exit 1
#   xts_key FILE               write a random 64-byte XTS-AES-256 key whose
#                              halves differ (needs head, tail, od)

set -e

# The binary: exported by the Makefile (AM_TESTS_ENVIRONMENT); else the
# build directory, else the source tree's parent of this script.
if [ -z "${DISKSTACK:-}" ]; then
	if [ -n "${abs_top_builddir:-}" ]; then
		DISKSTACK=$abs_top_builddir/diskstack
	else
		DISKSTACK=$(cd "$(dirname "$0")/../.." && pwd)/diskstack
	fi
fi
export DISKSTACK

fail()
{
	echo "$0: FAIL: $*" >&2
	exit 1
}

# A missing program or module is a skip for a developer running one test
# by hand, and a failure under DISKSTACK_STRICT_DEPS=1, which
# tools/quickstart.sh sets: it has installed every package the tests use
# (tests/integration/test-deps-packaged.sh checks that list), so a missing
# tool there is a broken set-up that must not pass as a skip.
skip()
{
	if [ "${DISKSTACK_STRICT_DEPS:-0}" = 1 ]; then
		fail "$* (DISKSTACK_STRICT_DEPS=1: every dependency must be installed)"
	fi
	echo "$0: $*, skipping"
	exit 77
}

requires()
{
	for _req in "$@"; do
		if ! command -v "$_req" >/dev/null 2>&1; then
			skip "'$_req' not found"
		fi
	done
}

# Debian's Python modules load in /usr/bin/python3 only; -I keeps the source
# and build trees' nbd/ folders from shadowing libnbd's nbd module.
requires_python()
{
	[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 not found"
	for _req in "$@"; do
		_mod=${_req%%.*}
		_probe="import $_mod"
		[ "$_mod" = "$_req" ] || _probe="$_probe; $_req"
		if ! /usr/bin/python3 -I -c "$_probe" 2>/dev/null; then
			skip "/usr/bin/python3 cannot load $_req"
		fi
	done
}

# A disk kind missing from the binary (configure --without-sqlite,
# --without-curl, --without-libnbd) is how it was built, not a broken
# set-up: a plain skip with the reason even under DISKSTACK_STRICT_DEPS
# (tools/quickstart.sh configures its test builds with every library, so
# there such a skip never happens). `diskstack help specs` lists each kind,
# marked "(not available in this build: <reason>)" when it was left out.
kind_missing()
{
	_line=$("$DISKSTACK" help specs | grep "^  $1:") ||
		fail "diskstack help specs does not list the $1: kind"
	case $_line in
	*"(not available in this build: "*)
		_why=${_line##*(not available in this build: }
		echo "${_why%)}" ;;
	esac
}

requires_kind()
{
	for _kind in "$@"; do
		_why=$(kind_missing "$_kind")
		if [ -n "$_why" ]; then
			echo "$0: the $_kind: disk kind is not in this build ($_why), skipping"
			exit 77
		fi
	done
}

_cleanup_cmds=""

# Registers a command (one string, evaluated at exit).
cleanup_fn()
{
	_cleanup_cmds="$*
$_cleanup_cmds"
}

_run_cleanup()
{
	_status=$?
	set +e
	_saved_ifs=$IFS
	IFS='
'
	for _c in $_cleanup_cmds; do
		IFS=$_saved_ifs
		eval "$_c"
		IFS='
'
	done
	IFS=$_saved_ifs
	if [ -n "${tmpdir:-}" ] && [ -d "$tmpdir" ]; then
		rm -rf "$tmpdir"
	fi
	exit $_status
}
trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-test.XXXXXX")

if [ ! -x "$DISKSTACK" ]; then
	echo "$0: $DISKSTACK is not built, skipping"
	exit 77
fi

start_bg()
{
	_pidfile=$1
	shift
	"$@" &
	echo $! > "$_pidfile"
	cleanup_fn "stop_bg '$_pidfile'"
}

# wait_gone PID TENTHS WHY [LOG]: waits up to TENTHS tenths of a second
# for process PID to end, else shows LOG and fails with WHY; does not
# reap it.
wait_gone()
{
	_i=0
	while kill -0 "$1" 2>/dev/null; do
		_i=$((_i + 1))
		if [ $_i -ge "$2" ]; then
			[ -z "${4:-}" ] || cat "$4" >&2
			fail "$3"
		fi
		sleep 0.1
	done
}

stop_bg()
{
	[ -f "$1" ] || return 0
	_pid=$(cat "$1")
	rm -f "$1"
	[ -n "$_pid" ] || return 0
	kill -TERM "$_pid" 2>/dev/null || return 0
	_i=0
	while kill -0 "$_pid" 2>/dev/null; do
		_i=$((_i + 1))
		if [ $_i -ge 50 ]; then
			kill -KILL "$_pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$_pid" 2>/dev/null || true
}

expect_exit()
{
	_want=$1
	shift
	_got=0
	"$@" >"$tmpdir/stdout" 2>"$tmpdir/stderr" || _got=$?
	if [ "$_got" != "$_want" ]; then
		echo "--- command: $*" >&2
		echo "--- stdout:" >&2
		cat "$tmpdir/stdout" >&2
		echo "--- stderr:" >&2
		cat "$tmpdir/stderr" >&2
		fail "'$*' exited with $_got, expected $_want"
	fi
}

expect_stderr()
{
	if ! grep -q -F -- "$1" "$tmpdir/stderr"; then
		echo "--- stderr:" >&2
		cat "$tmpdir/stderr" >&2
		fail "stderr does not contain '$1'"
	fi
}

# xts_key FILE: IEEE 1619 wants the two AES keys of XTS to differ (and
# OpenSSL refuses equal halves), so draw again in the unlikely case.
xts_key()
{
	while :; do
		head -c 64 /dev/urandom > "$1"
		[ "$(head -c 32 "$1" | od -An -tx1)" != "$(tail -c 32 "$1" | od -An -tx1)" ] && break
	done
}
