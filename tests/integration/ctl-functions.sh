# SPDX-License-Identifier: MIT
# ctl-functions.sh: shared by the test-ctl-*.sh tests, sourced after
# functions.sh (docs/ctl.md). $ctl is the control socket the test gives
# serve --control; c METHOD ARGS... runs `diskstack ctl` on it; json_check
# FILE EXPR fails the test unless the Python expression EXPR holds over r,
# the JSON document in FILE.
ctl=$tmpdir/ctl.sock
c() { "$DISKSTACK" ctl -S "$ctl" "$@"; }
json_check()
{
	"$PY" -I -c 'import json, sys; r = json.load(open(sys.argv[1])); assert eval(sys.argv[2]), (sys.argv[2], r)' "$@" ||
		fail "check failed: $2"
}
