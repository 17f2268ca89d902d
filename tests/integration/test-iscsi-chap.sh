#!/bin/sh
# SPDX-License-Identifier: MIT
# test-iscsi-chap.sh: CHAP (RFC 7143 §12.1.3) with libiscsi's initiator:
# the right secret logs in, a wrong one or none is refused with an
# authentication failure; the secret comes from a file (kept out of ps);
# mutual CHAP and a reflected challenge through the raw client.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires iscsi-inq
requires_python hashlib

T=iqn.2026-12.org.diskstack:chap
printf 'a-secret-of-16ch\n' > "$tmpdir/secret"
printf 'target-secret-99\n' > "$tmpdir/tsecret"
port=$(free_port)
serve s --iscsi "$port" --target $T --lun 0=mem:1M --chap-user alice \
	--chap-secret-file "$tmpdir/secret" --chap-target-user tgt \
	--chap-target-secret-file "$tmpdir/tsecret"
if tr '\0' ' ' < "/proc/$s_pid/cmdline" | grep -q "a-secret-of-16ch"; then
	fail "the secret shows in ps"
fi

timeout 30 iscsi-inq "iscsi://alice%a-secret-of-16ch@127.0.0.1:$port/$T/0" > "$tmpdir/inq" ||
	{ cat "$tmpdir/s.log"; fail "CHAP login with the right secret failed"; }
grep -q "Vendor:" "$tmpdir/inq" || fail "no INQUIRY data after a CHAP login"
for url in "iscsi://alice%wrong-secret-0000@127.0.0.1:$port/$T/0" \
	   "iscsi://mallory%a-secret-of-16ch@127.0.0.1:$port/$T/0" \
	   "iscsi://127.0.0.1:$port/$T/0"; do
	if timeout 30 iscsi-inq "$url" >/dev/null 2>&1; then
		fail "login succeeded with $url"
	fi
done
grep -q "refused (status 2/1)" "$tmpdir/s.log" || { cat "$tmpdir/s.log"; fail "no authentication failure logged"; }

"$PY" -I "$(dirname "$0")/iscsi-raw.py" "$port" "$T" alice a-secret-of-16ch tgt target-secret-99 ||
	fail "raw CHAP cases"
serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
