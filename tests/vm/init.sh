#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the tests/vm guests: mounts the pseudo filesystems, loads the
# staged modules (not ublk_drv: the tests expect modprobe to load it), brings
# up the network when asked, runs /vm/guest-<suite>.sh and powers off. QEMU
# runs with -no-reboot, so the power-off ends it.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=1200m tmp /tmp
mkdir -p /dev/pts /run /var/run /mnt
mount -t devpts devpts /dev/pts
echo 1 > /proc/sys/kernel/printk_ratelimit 2>/dev/null

while read -r m; do
	insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null ||
		echo "VMTEST: INFO insmod $m failed"
done < /modules.load

ip link set lo up 2>/dev/null
if grep -q 'ds.net=1' /proc/cmdline; then
	ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
fi

suite=$(cat /vm/suite)
cd /tmp
echo "VMTEST: BEGIN $suite kernel=$(uname -r) cpus=$(nproc) uptime=$(cut -d' ' -f1 /proc/uptime)"
sh "/vm/guest-$suite.sh" 2>&1
echo "VMTEST: END uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
