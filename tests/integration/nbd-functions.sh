# SPDX-License-Identifier: MIT
# nbd-functions.sh: helpers for the NBD server tests, sourced after
# functions.sh.
#
#   serve NAME ARGS...        start `diskstack serve -P ... ARGS` in the
#                             background, wait until it accepts clients;
#                             sets $NAME_pid (the server's pid)
#   serve_stop NAME           SIGTERM it, wait; the exit status is in
#                             $serve_status
#   uri_unix SOCK [EXPORT]    an nbd+unix:// URI
#   free_port                 print a free TCP port on 127.0.0.1
#   PY                        the Python that has the nbd module
#   nbd_py SCRIPT ARGS...     run a Python script with that interpreter

# nbdsh and python3-libnbd live in the system Python; the first python3 on
# $PATH may be another installation. Every call runs it isolated (-I): the
# source and build trees hold an nbd/ folder that would otherwise be imported
# as a namespace package in place of libnbd's module.
PY=/usr/bin/python3
export PY

# Probes for the libnbd binding itself (nbd.NBD), not for any module named
# nbd (python3-libnbd).
requires_nbd_python()
{
	requires_python nbd.NBD
}

# serve NAME ARGS...: the server logs to $tmpdir/NAME.log.
serve()
{
	_name=$1
	shift
	rm -f "$tmpdir/$_name.ready"
	"$DISKSTACK" serve -P "$tmpdir/$_name.ready" "$@" >"$tmpdir/$_name.log" 2>&1 &
	_pid=$!
	echo "$_pid" > "$tmpdir/$_name.pid"
	cleanup_fn "stop_bg '$tmpdir/$_name.pid'"
	eval "${_name}_pid=$_pid"
	_i=0
	while [ ! -s "$tmpdir/$_name.ready" ]; do
		if ! kill -0 "$_pid" 2>/dev/null; then
			cat "$tmpdir/$_name.log" >&2
			fail "server $_name exited during start-up"
		fi
		_i=$((_i + 1))
		[ $_i -lt 200 ] || fail "server $_name did not start within 20 s"
		sleep 0.1
	done
}

# serve_stop NAME: SIGTERM and wait (at most 30 s).
serve_stop()
{
	_pid=$(cat "$tmpdir/$1.pid")
	kill -TERM "$_pid" 2>/dev/null || true
	_i=0
	while kill -0 "$_pid" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -lt 300 ] || { cat "$tmpdir/$1.log" >&2; fail "server $1 ignored SIGTERM"; }
		sleep 0.1
	done
	serve_status=0
	wait "$_pid" || serve_status=$?
	rm -f "$tmpdir/$1.pid"
}

uri_unix()
{
	echo "nbd+unix:///${2:-}?socket=$1"
}

free_port()
{
	"$PY" -I -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

nbd_py()
{
	"$PY" -I "$@"
}
