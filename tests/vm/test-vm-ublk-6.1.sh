#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-ublk-6.1.sh: the ublk checks (tests/vm/guest-ublk.sh) in a QEMU
# TCG guest running Debian bookworm's 6.1 kernel with ublk_drv.ko built out
# of tree from linux-source-6.1.
. "$(dirname "$0")/vm-lib.sh"
exec "$VM_DIR/run-suite.sh" 6.1 ublk
