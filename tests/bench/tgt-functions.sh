# SPDX-License-Identifier: MIT
# tgt-functions.sh: Debian's tgt (tgtd + tgtadm) as the peer iSCSI target
# of the benchmarks and the conformance anchor (bash; sourced).
# docs/testing-iscsi.md explains why tgt is the anchor.
#
#   tgt_start DIR PORT      start tgtd in the foreground on 127.0.0.1:PORT,
#                           with a control port of its own (two tgtd can
#                           coexist); its pid goes to DIR/tgtd.pid
#   tgt_lun TID IQN LUN FILE [PARAMS]   a target (made once per TID) with
#                           FILE as LUN (rdwr backing store); PARAMS as in
#                           tgtadm --params (thin_provisioning=1,
#                           removable=1, readonly=1)
#   tgt_stop                delete the targets, then the tgtd process
#                           (it ignores SIGTERM while targets exist);
#                           SIGKILL by pid as a last resort
#   tgt_pid                 the running tgtd's pid
#
# tgt adds LUN 0 itself (a RAID controller, "IET Controller"): disks start
# at LUN 1.

tgt_dir= tgt_ctl= tgt_tids=

tgt_adm() { tgtadm -C "$tgt_ctl" --lld iscsi "$@"; }

tgt_pid() { cat "$tgt_dir/tgtd.pid"; }

tgt_start()
{
	local port=$2 i
	tgt_dir=$1
	# The control port picks tgtd's management socket
	# (/var/run/tgtd/socket.N); a random one keeps clear of other runs.
	tgt_ctl=$((1000 + RANDOM % 30000))
	tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$port" >"$tgt_dir/tgtd.log" 2>&1 &
	echo $! > "$tgt_dir/tgtd.pid"
	for i in $(seq 100); do
		tgt_adm --mode target --op show >/dev/null 2>&1 && return 0
		kill -0 "$(tgt_pid)" 2>/dev/null || break
		sleep 0.1
	done
	cat "$tgt_dir/tgtd.log" >&2
	echo "tgtd did not start" >&2
	return 1
}

tgt_lun()
{
	local tid=$1 iqn=$2 lun=$3 file=$4 params=${5:-}
	case " $tgt_tids " in
	*" $tid "*) ;;
	*)
		tgt_adm --mode target --op new --tid "$tid" --targetname "$iqn" || return 1
		tgt_adm --mode target --op bind --tid "$tid" --initiator-address ALL || return 1
		tgt_tids="$tgt_tids $tid" ;;
	esac
	tgt_adm --mode logicalunit --op new --tid "$tid" --lun "$lun" --backing-store "$file" \
		--bstype rdwr || return 1
	[ -z "$params" ] ||
		tgt_adm --mode logicalunit --op update --tid "$tid" --lun "$lun" --params "$params"
}

tgt_stop()
{
	local pid tid i
	[ -n "$tgt_dir" ] && [ -f "$tgt_dir/tgtd.pid" ] || return 0
	pid=$(tgt_pid)
	for tid in $tgt_tids; do
		tgt_adm --mode target --op delete --force --tid "$tid" >/dev/null 2>&1
	done
	tgtadm -C "$tgt_ctl" --mode system --op delete >/dev/null 2>&1
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$tgt_dir/tgtd.pid"
	tgt_tids=
}
