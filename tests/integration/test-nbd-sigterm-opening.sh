#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-sigterm-opening.sh: regression test for `diskstack serve`
# ignoring SIGTERM and SIGINT while its exports open. The stop signals are
# blocked before any disk opens, and the thread that takes them used to
# start only once the listeners were up, so an nbd: export whose server
# never answers (or a blob: on an unreachable host) made Ctrl-C do nothing
# for minutes. Now a stop signal during the opening ends the process at
# once (nothing was served yet) with status 128 + the signal.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_kind nbd
requires_python socket

# A "server" that accepts and never says a word: libnbd waits for its
# greeting.
mute=$tmpdir/mute.sock
/usr/bin/python3 -I - "$mute" <<'PYEOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
conns = []
for _ in range(300):                 # at most 5 minutes
    s.settimeout(1)
    try:
        conns.append(s.accept()[0])
        open(sys.argv[1] + ".accepted", "w").close()
    except socket.timeout:
        pass
PYEOF
echo $! > "$tmpdir/mute.pid"
cleanup_fn "stop_bg '$tmpdir/mute.pid'"
i=0
while [ ! -S "$mute" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || fail "the mute server did not start"; sleep 0.1
done

for sig in TERM INT; do
	# Before the server starts: it may connect before this shell runs
	# again (a loaded machine), and the mark must survive that.
	rm -f "$mute.accepted"
	"$DISKSTACK" serve -U "$tmpdir/s.sock" "nbd:nbd+unix:///?socket=$mute" \
		> "$tmpdir/srv-$sig.log" 2>&1 &
	pid=$!
	echo "$pid" > "$tmpdir/srv.pid"
	cleanup_fn "stop_bg '$tmpdir/srv.pid'"
	# Until the server is blocked on the mute socket's greeting.
	i=0
	while [ ! -e "$mute.accepted" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "serve never connected to the export"; sleep 0.1
	done
	sleep 0.5
	kill -0 "$pid" 2>/dev/null || { cat "$tmpdir/srv-$sig.log"; fail "serve ended on its own"; }
	kill -"$sig" "$pid"
	# Generous: it must end, not hang until libnbd gives up.
	wait_gone "$pid" 300 "SIG$sig ignored while the export opens" "$tmpdir/srv-$sig.log"
	st=0; wait "$pid" || st=$?
	case $sig in TERM) want=143 ;; INT) want=130 ;; esac
	[ "$st" = "$want" ] || { cat "$tmpdir/srv-$sig.log"; fail "exit status $st after SIG$sig, want $want"; }
	grep -q 'while opening the exports' "$tmpdir/srv-$sig.log" ||
		{ cat "$tmpdir/srv-$sig.log"; fail "the interruption was not logged"; }
	[ ! -e "$tmpdir/s.sock" ] || fail "a socket was created before the exports opened"
done
