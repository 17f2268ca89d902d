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
#   random_image FILE SIZE BS COUNT@SEEK...
#                             a sparse FILE of SIZE with random data in
#                             each extent (blocks of BS): a base image
#                             with both data and holes
#   PY                        the Python that has the nbd module
#   nbd_py SCRIPT ARGS...     run a Python script with that interpreter
#   nbd_raw_py SOCK ARGS...   run the Python script on stdin after a raw
#                             client's prelude (below) on Unix socket SOCK

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
	wait_gone "$_pid" 300 "server $1 ignored SIGTERM" "$tmpdir/$1.log"
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

random_image()
{
	_file=$1 _bs=$3
	truncate -s "$2" "$_file" || fail "truncate $_file"
	shift 3
	for _ext in "$@"; do
		dd if=/dev/urandom of="$_file" bs="$_bs" count="${_ext%@*}" seek="${_ext#*@}" \
			conv=notrunc 2>/dev/null || fail "dd into $_file"
	done
}

nbd_py()
{
	"$PY" -I "$@"
}

# The prelude of nbd_raw_py: a raw socket `s` connected to sys.argv[1]
# through the newstyle greeting with FIXED_NEWSTYLE|NO_ZEROES sent;
# rd(n, f) reads exactly n bytes, opt(o, data, f) sends option o, reply(f)
# reads one option reply as (type, data). f is another socket (the TLS one
# after STARTTLS), s by default.
NBD_RAW_PRELUDE='import socket, ssl, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def rd(n, f=None):
    b = b""
    while len(b) < n:
        c = (f or s).recv(n - len(b))
        assert c, "eof"
        b += c
    return b
assert rd(18)[16:] == b"\x00\x03"
s.sendall(struct.pack(">I", 3))
def opt(o, data=b"", f=None):
    (f or s).sendall(struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data)
def reply(f=None):
    magic, o, t, l = struct.unpack(">QIII", rd(20, f))
    assert magic == 0x3e889045565a9
    return t, rd(l, f)'

nbd_raw_py()
{
	{ printf '%s\n' "$NBD_RAW_PRELUDE"; cat; } | "$PY" -I - "$@"
}
