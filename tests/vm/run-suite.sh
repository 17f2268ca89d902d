#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-suite.sh KERNEL SUITE [qemu args...]: prepares KERNEL (6.12 or 6.1),
# builds the initramfs, boots it once running tests/vm/guest-SUITE.sh and
# reports the guest's results. Exit 0 pass, 1 fail, 77 skip.
# Environment: DISKSTACK (the binary), DISKSTACK_VM_CACHE (download/build
# cache), DISKSTACK_VM_TIMEOUT (seconds per boot, default 420),
# DISKSTACK_VM_KEEP=1 (keep the console log and initramfs).
. "$(dirname "$0")/vm-lib.sh"
kernel=$1 suite=$2
shift 2
vm_requires
vm_prepare "$kernel"
work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm.XXXXXX")
[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
INITRD=$work/initrd.img
vm_initrd "$INITRD" "$suite"
log=$work/console-$kernel-$suite.log
vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-420}" "${VM_APPEND:-}" -nic none "$@"
vm_results "$log" "$kernel/$suite"
rc=$?
[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work"
exit $rc
