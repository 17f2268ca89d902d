#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-ublk-6.12.sh: the ublk checks (tests/vm/guest-ublk.sh) in a QEMU
# TCG guest running Debian's 6.12 kernel (ublk_drv as shipped).
. "$(dirname "$0")/vm-lib.sh"
exec "$VM_DIR/run-suite.sh" 6.12 ublk
