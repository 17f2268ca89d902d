# SPDX-License-Identifier: MIT
# vhost-lib.sh: host side of the vhost-user-blk guests (bash; sourced after
# vm-lib.sh). A QEMU guest's virtio-blk disks are served by vhost-user-blk
# back-ends on the host, each its own process on a Unix socket: diskstack's
# (`diskstack vhost-user-blk SOCKET SPEC`) or qemu-storage-daemon's export of
# the same kind of disk, the peer the harness was validated against
# (docs/testing.md). Guest RAM is a shared memfd: the back-end maps it.
#
#   vhost_requires PEER       skip (77) unless PEER (diskstack|qsd) can run
#   vhost_start NAME SOCK SPEC OPTS   start a $VHOST_PEER back-end; OPTS: q=N ro qmp=PATH
#                             nolock (qsd: other processes open the file too),
#                             verbose (diskstack: log every vhost-user message)
#                             SPEC is a diskstack spec of a file:,
#                             memdiff:file: or raw path; for qsd it is turned
#                             into the equivalent --blockdev chain
#   vhost_restart NAME        SIGKILL the back-end, start it again (same socket)
#   vhost_alive NAME          the back-end is still running
#   vhost_stop_all            SIGTERM every back-end, by pid; fails on an exit != 0
#   vhost_resize NAME BYTES   grow the disk: QMP block_resize (qsd), or for
#                             diskstack a loop device grown with losetup -c
#   vhost_memory_args         the QEMU options for shared guest RAM
#   vhost_device_args ID SOCK QUEUES [reconnect]   QEMU options of one disk
#   vhost_cpu_ticks NAME      utime+stime of the back-end, clock ticks
declare -A VHOST_PID VHOST_SOCK VHOST_SPEC VHOST_OPTS VHOST_LOG VHOST_KIND
VHOST_PEER=diskstack
VHOST_WORK=

vhost_requires()
{
	VHOST_PEER=$1
	case $VHOST_PEER in
	diskstack)
		"$DISKSTACK" vhost-user-blk --help >/dev/null 2>&1 ||
			vm_skip "the vhost-user-blk back-end is not in this build" ;;
	qsd)
		command -v qemu-storage-daemon >/dev/null 2>&1 || vm_skip "qemu-storage-daemon is missing"
		command -v qemu-img >/dev/null 2>&1 || vm_skip "qemu-img is missing" ;;
	*) vm_die "unknown vhost-user peer '$VHOST_PEER' (diskstack or qsd)" ;;
	esac
}

# _vhost_listening SOCK: a process listens on SOCK (/proc/net/unix flag
# __SO_ACCEPTCON). Connecting to find out would take the back-end's one
# front-end slot.
_vhost_listening()
{
	awk -v p="$1" '$NF == p && $4 == "00010000" { f = 1 } END { exit !f }' /proc/net/unix
}

# _vhost_qsd_args SOCK SPEC OPTS: qemu-storage-daemon's arguments for the
# disk that SPEC would be for diskstack.
_vhost_qsd_args()
{
	local sock=$1 spec=$2 opts=$3 q=1 writable=on file o ro= lock=
	for o in $opts; do
		case $o in
		q=*) q=${o#q=} ;;
		ro) writable=off ro=,read-only=on ;;
		nolock) lock=,locking=off ;;
		qmp=*) printf '%s\n' --chardev "socket,id=m0,path=${o#qmp=},server=on,wait=off" --monitor chardev=m0 ;;
		esac
	done
	# Decorators diskstack has and qemu-storage-daemon lacks are dropped.
	spec=${spec#delay:*:}
	case $spec in
	memdiff:file:*)
		# A qcow2 overlay plays memdiff's part: the base is only read.
		file=${spec#memdiff:file:}
		[ -f "$file.qcow2" ] || qemu-img create -q -f qcow2 -b "$file" -F raw "$file.qcow2" ||
			return 1
		printf '%s\n' --blockdev "driver=file,node-name=f0,filename=$file.qcow2,discard=unmap" \
			--blockdev "driver=qcow2,node-name=d0,file=f0,discard=unmap" ;;
	file:*)
		file=${spec#file:}
		printf '%s\n' --blockdev "driver=file,node-name=f0,filename=$file,discard=unmap$ro$lock" \
			--blockdev "driver=raw,node-name=d0,file=f0,discard=unmap$ro" ;;
	*) vm_log "no qemu-storage-daemon equivalent of '$spec'"; return 1 ;;
	esac
	printf '%s\n' --export \
		"type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock,writable=$writable,num-queues=$q"
}

_vhost_launch()
{
	local name=$1 sock=${VHOST_SOCK[$1]} spec=${VHOST_SPEC[$1]} opts=${VHOST_OPTS[$1]} o
	local -a cmd
	if [ "${VHOST_KIND[$name]}" = qsd ]; then
		mapfile -t cmd < <(_vhost_qsd_args "$sock" "$spec" "$opts")
		[ ${#cmd[@]} -gt 0 ] || return 1
		cmd=(qemu-storage-daemon "${cmd[@]}")
	else
		cmd=("$DISKSTACK" vhost-user-blk "$sock" "$spec")
		for o in $opts; do
			case $o in
			q=*) cmd+=(--queues "${o#q=}") ;;
			ro) cmd+=(--read-only) ;;
			verbose) cmd+=(-v) ;;
			esac
		done
	fi
	echo "+ ${cmd[*]}" >>"${VHOST_LOG[$name]}"
	"${cmd[@]}" </dev/null >>"${VHOST_LOG[$name]}" 2>&1 &
	VHOST_PID[$name]=$!
	for _ in $(seq 200); do
		_vhost_listening "$sock" && return 0
		kill -0 "${VHOST_PID[$name]}" 2>/dev/null || break
		sleep 0.05
	done
	vm_log "back-end $name did not listen on $sock:"
	tail -n 20 "${VHOST_LOG[$name]}" >&2
	return 1
}

vhost_start()
{
	VHOST_SOCK[$1]=$2
	VHOST_SPEC[$1]=$3
	VHOST_OPTS[$1]=${4:-}
	VHOST_LOG[$1]=$VHOST_WORK/backend-$1.log
	VHOST_KIND[$1]=$VHOST_PEER
	_vhost_launch "$1"
}

vhost_alive() { kill -0 "${VHOST_PID[$1]}" 2>/dev/null; }

# The restart leaves the socket file where it was: a back-end must take its
# path over again, as after a crash in production.
vhost_restart()
{
	local name=$1
	kill -KILL "${VHOST_PID[$name]}" 2>/dev/null
	wait "${VHOST_PID[$name]}" 2>/dev/null
	echo "+ killed with SIGKILL" >>"${VHOST_LOG[$name]}"
	sleep 1
	_vhost_launch "$name"
}

# vhost_stop_all: SIGTERM to every back-end; fails if one exited non-zero
# (an ASan leak report does that), saying which on stderr.
vhost_stop_all()
{
	local n st r=0
	for n in "${!VHOST_PID[@]}"; do
		kill -TERM "${VHOST_PID[$n]}" 2>/dev/null
	done
	for n in "${!VHOST_PID[@]}"; do
		wait "${VHOST_PID[$n]}" 2>/dev/null
		st=$?
		[ $st -eq 0 ] || { vm_log "back-end $n exited $st after SIGTERM"; r=1; }
		unset "VHOST_PID[$n]"
	done
	return $r
}

# vhost_resize NAME BYTES: the disk was started on a loop device for
# diskstack (its file backend follows block-device resize events) or with
# qmp=PATH for qemu-storage-daemon.
vhost_resize()
{
	local name=$1 bytes=$2 o spec=${VHOST_SPEC[$1]}
	if [ "${VHOST_KIND[$name]}" = qsd ]; then
		for o in ${VHOST_OPTS[$name]}; do
			case $o in qmp=*) _vhost_qmp "${o#qmp=}" \
				"{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"d0\", \"size\": $bytes}}" ;;
			esac
		done
	else
		local dev=${spec#file:} back
		back=$(losetup -n -O BACK-FILE "$dev") || return 1
		truncate -s "$bytes" "$back" && losetup -c "$dev"
	fi
}

# _vhost_qmp SOCK CMD: one QMP command after the capabilities handshake.
_vhost_qmp()
{
	/usr/bin/python3 -I - "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ('{"execute": "qmp_capabilities"}', sys.argv[2]):
    f.write(cmd + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
    if "error" in r:
        sys.exit("QMP: %s" % r["error"])
EOF
}

vhost_memory_args()
{
	printf '%s\n' -object "memory-backend-memfd,id=mem0,size=$VM_MEM,share=on" \
		-machine memory-backend=mem0
}

vhost_device_args()
{
	local id=$1 sock=$2 q=$3 rc=
	[ "${4:-}" = reconnect ] && rc=,reconnect=1
	printf '%s\n' -chardev "socket,id=$id,path=$sock$rc" \
		-device "vhost-user-blk-pci,chardev=$id,num-queues=$q"
}

vhost_cpu_ticks()
{
	# Fields 14 and 15 of /proc/PID/stat; the command name (field 2) is
	# parenthesised and may hold spaces, so count from its closing paren.
	sed 's/.*) //' "/proc/${VHOST_PID[$1]}/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# vhost_sanitizer_report NAME: the back-end's log holds an ASan/UBSan report.
vhost_sanitizer_report()
{
	grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "${VHOST_LOG[$1]}" 2>/dev/null
}
