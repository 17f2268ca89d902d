#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbdkit-plugin-nbdsh.sh: the nbdkit plugin through libnbd's Python
# binding (nbdkit-plugin.py): every capability, data op and error on a
# writable RAM disk, a read-only spec, an encrypted disk (no fast zero)
# and injected failures (error:).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit-functions.sh"
requires_plugin
requires_python nbd.NBD
script=$(cd "$(dirname "$0")" && pwd)/nbdkit-plugin.py

nbdkit -U - "$plugin" mem:64M --run "$py '$script' \"\$uri\" rw" || fail "mem:64M"
nbdkit -U - "$plugin" mem:1M,ro --run "$py '$script' \"\$uri\" ro" || fail "mem:1M,ro"
xts_key "$tmpdir/key"
nbdkit -U - "$plugin" "crypt:xts-aes-256:$tmpdir/key:mem:8M" --run "$py '$script' \"\$uri\" nozero" ||
	fail "crypt:"
# Injected failures: the errno of an I/O error, a medium error (EIO) and
# a write-protect refusal (EPERM).
nbdkit -U - "$plugin" "error:read:eio;range=0-7/write:enospc;range=0-7/unmap:readonly/flush:medium:mem:1M" \
	--run "$py '$script' \"\$uri\" errors" || fail "error:"
# nbdkit -r on a writable spec: the connection is read-only.
nbdkit -U - -r "$plugin" mem:1M --run "nbdinfo --is read-only \"\$uri\"" || fail "nbdkit -r"
echo "$0: ok"
