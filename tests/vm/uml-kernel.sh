#!/bin/bash
# SPDX-License-Identifier: MIT
# uml-kernel.sh: builds (once) a User-Mode Linux kernel that can run the real
# Linux NVMe PCI driver against diskstack's emulated NVMe function, and prints
# the path of the cached `linux` binary on stdout.
#
# Debian's user-mode-linux package is built without CONFIG_UML_PCI_OVER_VIRTIO
# and without PCI or NVMe, so the kernel comes from Debian's linux-source-6.12
# (apt-get download, never installed), configured ARCH=um with virt-pci (PCI
# over a vhost-user socket, arch/um/drivers/virt-pci.c), the NVMe PCI driver,
# an initramfs, devtmpfs/tmpfs and ext4 (the guest test runs mkfs.ext4 and
# fsck), and trimmed otherwise: the build takes 20-40 min on a loaded 2-core
# machine, so the result is cached in the VM suite's cache directory
# ($VM_CACHE, tests/vm/vm-lib.sh) as uml-<source version>-<option hash>/linux
# and later runs reuse it. Change UML_OPTIONS and the hash changes with it.
#
# Environment: UML_JOBS (make -j, default 2), UML_NICE (default 19).
# Exit: 0 with the path printed; 77 when the host cannot build it (not root,
# no flex/bison/gcc); 1 on a failed download or build.
set -uo pipefail
. "$(dirname "$0")/vm-lib.sh"

# The virtio device ID virt-pci answers to: no official one exists
# (CONFIG_UML_PCI_OVER_VIRTIO_DEVICE_ID defaults to -1, "none").
UML_VIRTPCI_ID=1234

# scripts/config arguments applied to `make ARCH=um defconfig`. Line order is
# the order applied; every line is part of the cache key.
UML_OPTIONS="
--enable VIRTIO_UML
--enable UML_PCI_OVER_VIRTIO
--set-val UML_PCI_OVER_VIRTIO_DEVICE_ID $UML_VIRTPCI_ID
--enable PCI
--enable PCI_MSI
--enable BLK_DEV
--enable NVME_CORE
--enable BLK_DEV_NVME
--enable BLK_DEV_INITRD
--enable RD_GZIP
--enable DEVTMPFS
--enable DEVTMPFS_MOUNT
--enable TMPFS
--enable EXT4_FS
--enable PROC_FS
--enable SYSFS
--disable DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT
--enable DEBUG_INFO_NONE
--disable DEBUG_KERNEL
--disable NET
--disable REISERFS_FS
--disable QUOTA
--disable CGROUPS
--disable SYSVIPC
--disable POSIX_MQUEUE
--disable BSD_PROCESS_ACCT
--disable IKCONFIG
--disable MODULES
--disable SOUND
--disable HOSTFS
--disable MAGIC_SYSRQ
--disable BLK_DEV_UBD
--disable ISO9660_FS
--disable AUTOFS_FS
--disable BINFMT_MISC
--disable NLS
"

uml_skip() { echo "$0: SKIP: $*" >&2; exit 77; }

[ "$(id -u)" -eq 0 ] || uml_skip "needs root (apt-get download into $VM_CACHE)"
for t in flex bison gcc make bc dpkg-deb apt-get xz flock sha256sum; do
	command -v "$t" >/dev/null 2>&1 ||
		uml_skip "missing $t (tools/quickstart.sh deps installs it)"
done
mkdir -p "$VM_CACHE/debs" || { echo "cannot create $VM_CACHE" >&2; exit 1; }

# The source version: apt's candidate, else whatever was downloaded before.
srcver=$(apt-cache show --no-all-versions linux-source-6.12 2>/dev/null |
	awk '/^Version:/{print $2; exit}')
if [ -z "$srcver" ]; then
	deb=$(ls "$VM_CACHE"/debs/linux-source-6.12_*.deb 2>/dev/null | tail -n1)
	[ -n "$deb" ] || { echo "linux-source-6.12 is not in apt and not cached" >&2; exit 1; }
	srcver=$(dpkg-deb -f "$deb" Version)
fi
# Version strings hold ~ and +, harmless in a directory name.
hash=$(printf '%s' "$UML_OPTIONS" | sha256sum | cut -c1-12)
out=$VM_CACHE/uml-$srcver-$hash

_uml_build()
{
	local deb src t0 t1 t2 t3
	[ -x "$out/linux" ] && return 0
	deb=$(ls "$VM_CACHE"/debs/linux-source-6.12_"$srcver"_*.deb 2>/dev/null | head -n1)
	if [ -z "$deb" ]; then
		vm_log "downloading linux-source-6.12 $srcver"
		(cd "$VM_CACHE/debs" && apt-get download "linux-source-6.12=$srcver" >/dev/null 2>&1) ||
			{ vm_log "apt-get download linux-source-6.12=$srcver failed"; return 1; }
		deb=$(ls "$VM_CACHE"/debs/linux-source-6.12_"$srcver"_*.deb | head -n1)
	fi
	src=$(mktemp -d "$VM_CACHE/.uml-src.XXXXXX")
	t0=$(date +%s)
	vm_log "extracting $deb"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -x -O ./usr/src/linux-source-6.12.tar.xz | xz -dc -T2 | tar -x -C "$src" ||
		{ rm -rf "$src"; return 1; }
	t1=$(date +%s)
	(
		cd "$src/linux-source-6.12" || exit 1
		make ARCH=um defconfig >/dev/null || exit 1
		# shellcheck disable=SC2086 # one option per word pair, on purpose
		./scripts/config $UML_OPTIONS || exit 1
		make ARCH=um olddefconfig >/dev/null || exit 1
		# olddefconfig silently drops what the architecture cannot have:
		# check that the options the test needs survived.
		for o in VIRTIO_UML UML_PCI_OVER_VIRTIO PCI PCI_MSI BLK_DEV_NVME \
			BLK_DEV_INITRD DEVTMPFS TMPFS EXT4_FS; do
			grep -qx "CONFIG_$o=y" .config || { vm_log "CONFIG_$o did not stick"; exit 1; }
		done
		grep -qx "CONFIG_UML_PCI_OVER_VIRTIO_DEVICE_ID=$UML_VIRTPCI_ID" .config || exit 1
	) || { rm -rf "$src"; return 1; }
	t2=$(date +%s)
	vm_log "building the UML kernel (make -j${UML_JOBS:-2}; 20-40 min)"
	nice -n "${UML_NICE:-19}" make -C "$src/linux-source-6.12" ARCH=um -j"${UML_JOBS:-2}" linux \
		>"$src/build.log" 2>&1 ||
		{ tail -30 "$src/build.log" >&2; rm -rf "$src"; return 1; }
	t3=$(date +%s)
	rm -rf "$out"
	mkdir -p "$out"
	cp "$src/linux-source-6.12/linux" "$src/linux-source-6.12/.config" "$out/"
	printf 'extract %s s, config %s s, make %s s\n' $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) \
		> "$out/build-time"
	vm_log "UML kernel built: $(cat "$out/build-time")"
	rm -rf "$src"
}

# A lock of its own: the build is long and must not block the QEMU suites
# that share $VM_CACHE/.lock.
(
	flock 8 || exit 1
	_uml_build
) 8>"$VM_CACHE/.uml.lock" || exit 1
echo "$out/linux"
