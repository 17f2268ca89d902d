# SPDX-License-Identifier: MIT
# guest-lib.sh: helpers for the guest scripts of tests/vm (busybox sh).
#
#   run_test NAME FUNC   runs FUNC in a subshell with a fresh $T directory,
#                        prints "VMTEST: PASS|FAIL|SKIP NAME", cleans up
#   fail MSG / skip MSG  (inside FUNC) report and return non-zero
#   info MSG             an informational result line
#   ds_arg NAME          ds.NAME=VALUE from the kernel command line
#   ds ARGS...           the diskstack command (stderr into $T/ds.err)
#   ublk_up ARGS...      diskstack ublk add ... --daemon; prints the device
#   wait_for COND SECS   polls the shell condition COND every 0.1 s
#   wait_s COND SECS     the same, once a second
#   dvd_eject_load CD    eject, reload and re-read the DVD of sr device CD
#   rw_back DEV BS SEEK COUNT WHAT  write and read back COUNT blocks of DEV
#   last_mib_rw DEV MIB  write and read back MiB number MIB of DEV
#   remove_under_io DEV WHAT CTL_ARGS  the host removes DEV while dd writes
#   fs_check DEV         ext4 on DEV: mkfs, mount, write, remount, cmp, fsck
#   fio_verify DEV ARGS  fio --verify=crc32c on DEV, QD32, two jobs
#   queues_dispatched NAME H...  each blk-mq queue H of NAME was used
DS=/usr/bin/diskstack
# Real util-linux/e2fsprogs binaries: busybox's shell prefers its own applets
# (blkdiscard without -z, mke2fs without ext4) over $PATH.
BLKDISCARD=/usr/sbin/blkdiscard
FALLOCATE=/usr/bin/fallocate
LOSETUP=/usr/sbin/losetup
MKFS_EXT4="/usr/sbin/mke2fs -t ext4"
E2FSCK=/usr/sbin/e2fsck
T=/tmp/t
KV=$(uname -r)

# ds_arg NAME: the value of ds.NAME=VALUE on the kernel command line
# (the host's test script puts the guest's parameters there).
ds_arg() { sed -n "s/.*ds\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }

info() { echo "VMTEST: INFO $*"; }
fail()
{
	echo "VMTEST: FAIL $TNAME: $*"
	: > "$T/.failed"
	[ -s "$T/ds.err" ] && sed 's/^/    stderr: /' "$T/ds.err" | tail -n 20
	return 1
}
skip() { echo "VMTEST: SKIP $TNAME: $*"; return 77; }

ds() { "$DS" "$@" 2>>"$T/ds.err"; }

now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# _wait_poll COND N STEP: evaluates COND up to N times, STEP seconds apart.
_wait_poll()
{
	_cond=$1
	_n=$2
	while [ "$_n" -gt 0 ]; do
		eval "$_cond" && return 0
		sleep "$3"
		_n=$((_n - 1))
	done
	return 1
}

wait_for() { _wait_poll "$1" $(($2 * 10)) 0.1; }

# wait_s COND SECS: wait_for at one poll a second (for a COND that forks
# many processes per call, slow under TCG).
wait_s() { _wait_poll "$1" "$2" 1; }

# rw_back DEV BS SEEK COUNT WHAT: writes COUNT blocks of BS random bytes
# to DEV from block SEEK and reads them back, both direct. Fails the test
# ("write WHAT", "what was written WHAT reads back different") when
# either goes wrong.
rw_back()
{
	dd if=/dev/urandom of="$T/rw" bs="$2" count="$4" 2>/dev/null
	dd if="$T/rw" of="$1" bs="$2" seek="$3" oflag=direct 2>/dev/null || { fail "write $5"; return 1; }
	dd if="$1" of="$T/rw.back" bs="$2" skip="$3" count="$4" iflag=direct 2>/dev/null
	cmp "$T/rw" "$T/rw.back" || { fail "what was written $5 reads back different"; return 1; }
}

# remove_under_io DEV WHAT CTL_ARGS: dd rewrites DEV until a write fails
# while the host removes it (`diskstack ctl CTL_ARGS`, asked for with a
# "VMTEST: HOST-CTL" line); the dd must end within 120 s (an error, never
# a hang). WHAT ("LUN", "namespace") names DEV in the messages.
remove_under_io()
{
	( while dd if=/dev/zero of="$1" bs=64k count=512 oflag=direct 2>"$T/dd.err"; do :; done ) &
	_ddpid=$!
	sleep 1
	echo "VMTEST: HOST-CTL $3"
	wait_s '! kill -0 $_ddpid 2>/dev/null' 120 || { kill $_ddpid; fail "dd still runs after the $2 was removed"; return 1; }
	wait $_ddpid
	info "dd on the removed $2 ended: $(grep -v records "$T/dd.err" | head -n 1)"
}

# last_mib_rw DEV MIB: rw_back of MiB number MIB of DEV (the last one
# after a resize).
last_mib_rw() { rw_back "$1" 1M "$2" 1 "to the new last MiB"; }

# dvd_eject_load CD: START STOP UNIT with LOEJ=1 ejects the disc of the
# sr device CD, after which TEST UNIT READY must report no medium; LOEJ=1
# START=1 closes the tray over it again, as a real drive does (MMC-6;
# Linux's sr sends the same when it opens a drive whose tray is open), and
# the disc must read as before (/vm/dvd.md5). Fails the test otherwise.
dvd_eject_load()
{
	cd=$1
	sg_start --eject "$cd" >"$T/eject" 2>&1 || { cat "$T/eject"; fail "sg_start --eject $cd"; return 1; }
	if sg_turs "$cd" >"$T/tur" 2>&1; then
		fail "TEST UNIT READY still GOOD after the eject"; return 1
	fi
	grep -qi 'not present\|not ready' "$T/tur" || { cat "$T/tur"; fail "after the eject TUR did not say the medium is absent"; return 1; }
	sg_start --load "$cd" >"$T/load" 2>&1 || { cat "$T/load"; fail "sg_start --load $cd"; return 1; }
	wait_for 'sg_turs "$cd" >/dev/null 2>&1' 10 || { sg_turs "$cd"; fail "no medium after the load"; return 1; }
	mkdir -p /mnt/cd
	mount -t iso9660 -o ro "$cd" /mnt/cd || { dmesg | tail -n 20; fail "mount after the load"; return 1; }
	(cd /mnt/cd && md5sum -c /vm/dvd.md5) >"$T/md5" 2>&1 || { cat "$T/md5"; umount /mnt/cd; fail "the DVD's files differ after the load"; return 1; }
	umount /mnt/cd
}

# ublk_up ARGS...: starts a daemon serving ARGS; prints /dev/ublkbN.
ublk_up()
{
	timeout 120 "$DS" ublk add "$@" --daemon 2>>"$T/ds.err"
}

# The id N of /dev/ublkbN.
dev_id() { echo "${1#/dev/ublkb}"; }

# The state of device N as `ublk list` shows it.
ublk_state()
{
	"$DS" ublk list 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'
}

# Removes everything a test may have left: mounts, servers, devices.
cleanup_all()
{
	for m in /mnt/*; do
		grep -q " $m " /proc/mounts && umount -f "$m" 2>/dev/null
	done
	for p in "$T"/*.pid; do
		[ -f "$p" ] || continue
		kill -TERM "$(cat "$p")" 2>/dev/null
	done
	sleep 0.2
	for c in /sys/class/ublk-char/ublkc*; do
		[ -e "$c" ] || continue
		timeout 60 "$DS" ublk del --force "${c##*/ublkc}" >/dev/null 2>&1
	done
	for p in "$T"/*.pid; do
		[ -f "$p" ] && kill -KILL "$(cat "$p")" 2>/dev/null
	done
}

run_test()
{
	TNAME=$1
	rm -rf "$T"
	mkdir -p "$T"
	echo "VMTEST: RUN $TNAME (t=$(now))"
	_t0=$(now)
	( cd "$T" && "$2" )
	_rc=$?
	case $_rc in
	0) echo "VMTEST: PASS $TNAME ($(elapsed "$_t0") s)" ;;
	77) ;;
	*) [ -e "$T/.failed" ] || echo "VMTEST: FAIL $TNAME: exit $_rc" ;;
	esac
	cleanup_all
	# A sanitizer build (tests run with an ASan/UBSan diskstack) reports
	# into the servers' stderr, which is $T/ds.err.
	sleep 0.2
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/ds.err" 2>/dev/null; then
		echo "VMTEST: FAIL $TNAME: sanitizer report"
		grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/ds.err" | head -n 60
	fi
}

# fs_check DEV: mkfs.ext4, mount, write, remount, verify, fsck.
fs_check()
{
	dev=$1
	$MKFS_EXT4 -q -F -b 4096 "$dev" || { fail "mkfs.ext4 on $dev"; return 1; }
	mkdir -p /mnt/n
	mount -t ext4 "$dev" /mnt/n || { fail "mount $dev"; return 1; }
	dd if=/dev/urandom of="$T/f" bs=1M count=16 2>/dev/null
	cp "$T/f" /mnt/n/f
	echo "hello from the guest" > /mnt/n/hello
	sync
	umount /mnt/n || { fail "umount"; return 1; }
	echo 3 > /proc/sys/vm/drop_caches
	mount -t ext4 "$dev" /mnt/n || { fail "remount $dev"; return 1; }
	cmp "$T/f" /mnt/n/f || { fail "file differs after remount"; return 1; }
	[ "$(cat /mnt/n/hello)" = "hello from the guest" ] || { fail "small file differs"; return 1; }
	umount /mnt/n
	$E2FSCK -fn "$dev" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck $dev"; return 1; }
}

# fio_verify DEV [FIO ARGS...]: fio --verify=crc32c on the raw DEV, QD32 per
# job, two jobs on the two CPUs (so two blk-mq queues where there are two);
# later arguments override the defaults; output in $T/fio.out.
fio_verify()
{
	dev=$1
	shift
	fio --name=verify --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite \
		--bssplit=4k/70:64k/20:512k/10 --iodepth=32 --numjobs=2 --size=24M --offset_increment=24M \
		--cpus_allowed=0-1 --cpus_allowed_policy=split --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --group_reporting "$@" >"$T/fio.out" 2>&1
}

# queues_dispatched NAME H...: each blk-mq hardware queue H of /sys/block/NAME
# dispatched requests (blk-mq debugfs, when available).
queues_dispatched()
{
	_name=$1
	shift
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || [ -d /sys/kernel/debug/block ] ||
		return 0
	for _h in "$@"; do
		_d=/sys/kernel/debug/block/$_name/hctx$_h/dispatched
		[ -f "$_d" ] || continue
		_n=$(awk '{ s += $2 } END { print s + 0 }' "$_d")
		[ "$_n" -gt 0 ] || { fail "queue $_h dispatched nothing"; return 1; }
	done
}

# ---- benchmarks (guest-vhost-bench.sh, guest-nvme-bench.sh) --------------
# Requests completed by /sys/block/NAME: reads + writes (+ flushes).
bench_requests() { awk '{ print $1 + $5 + ($16 == "" ? 0 : $16) }' "/sys/block/$1/stat"; }

# bench_job_args JOB: fio options of one job name.
bench_job_args()
{
	case $1 in
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
	read-1m-qd8) echo "--rw=read --bs=1M --iodepth=8" ;;
	write-1m-qd8) echo "--rw=write --bs=1M --iodepth=8" ;;
	*) return 1 ;;
	esac
}

# bench_rounds NAMES: $ROUNDS rounds; per round, per job of $JOBS, the
# disks NAMES (block device in $dev_NAME, '-' as '_') take turns at one
# fio run of $RUNTIME s (plus $BENCH_FIO_ARGS). Around each run it prints
#   VMTEST: HOST mark NAME JOB ROUND start|end
# for the host to sample CPU times, then
#   VMTEST: RESULT NAME JOB ROUND IOPS REQUESTS
# (REQUESTS: what the device completed during the run). 1 on a failure.
bench_rounds()
{
	_r=1
	while [ $_r -le "$ROUNDS" ]; do
		for _j in $JOBS; do
			_a=$(bench_job_args "$_j") || { fail "unknown job $_j"; return 1; }
			for _n in $1; do
				_b=$(eval echo "\$dev_$(echo "$_n" | tr '-' '_')")
				_q0=$(bench_requests "$_b")
				echo "VMTEST: HOST mark $_n $_j $_r start"
				# The host samples on seeing the line; give it the time.
				sleep 0.3
				_iops=$(fio --name=b --filename="/dev/$_b" --ioengine=libaio --direct=1 $_a \
					--numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=1 ${BENCH_FIO_ARGS:-} \
					--randrepeat=0 --norandommap --output-format=terse --terse-version=3 2>"$T/fio.err" |
					awk -F';' '{ printf "%.0f\n", $8 + $49 }')
				_q1=$(bench_requests "$_b")
				echo "VMTEST: HOST mark $_n $_j $_r end"
				[ -n "$_iops" ] || { cat "$T/fio.err"; fail "fio on $_n ($_j)"; return 1; }
				echo "VMTEST: RESULT $_n $_j $_r $_iops $((_q1 - _q0))"
			done
		done
		_r=$((_r + 1))
	done
	# Before the guest powers off: time for the host to sample the last mark.
	sleep 1
}
