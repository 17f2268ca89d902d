#!/bin/sh
# SPDX-License-Identifier: MIT
# test-crypt-oracle.sh: what `diskstack copy` writes through crypt: into a
# file is, byte for byte, the sector-by-sector XTS-AES-256 encryption of
# the plaintext by an independent implementation (python3-cryptography,
# xts-oracle.py) at 512-byte sectors, zero ranges included; it decrypts back
# both ways, also through the fused path (crypt over memdiff:); a wrong key reads noise without an error; bad key files are
# refused before anything is created; the key never shows in `info`.
. "$(dirname "$0")/functions.sh"
requires cmp dd head truncate od tr
py=/usr/bin/python3
requires_python cryptography
oracle="$py -I $(cd "$(dirname "$0")" && pwd)/xts-oracle.py"
cd "$tmpdir"

xts_key k.bin
spec_of() { echo "crypt:xts-aes-256:$1:file:$2"; }

# 4 MiB of plaintext: random data, written zeroes, a hole, more data, a
# repeating pattern and a hole at the end.
truncate -s 4M plain.img
dd if=/dev/urandom of=plain.img bs=64K count=16 conv=notrunc 2>/dev/null
dd if=/dev/zero of=plain.img bs=64K count=8 seek=16 conv=notrunc 2>/dev/null
dd if=/dev/urandom of=plain.img bs=4K count=37 seek=700 conv=notrunc 2>/dev/null
yes diskstack | head -c 300000 | dd of=plain.img bs=512 seek=6000 conv=notrunc 2>/dev/null

# 1. Encrypt with diskstack; the oracle must agree on every byte.
expect_exit 0 "$DISKSTACK" copy --quiet plain.img "$(spec_of k.bin 'enc.img;create=4M')"
$oracle encrypt k.bin 512 plain.img expect.img
cmp expect.img enc.img || fail "ciphertext differs from the oracle"
cmp -s plain.img enc.img && fail "ciphertext equals the plaintext"

# 2. Decrypt with diskstack and with the oracle.
expect_exit 0 "$DISKSTACK" copy --quiet "$(spec_of k.bin enc.img)" "file:back.img;create=4M"
cmp plain.img back.img || fail "diskstack does not decrypt its own ciphertext"
$oracle decrypt k.bin 512 enc.img dec.img
cmp plain.img dec.img || fail "the oracle does not decrypt diskstack's ciphertext"

# 2b. The fused path (the RAM layer of memdiff: applies the cipher): the
# oracle's ciphertext in the lower file reads back as the plaintext, and
# info says which path a stack takes.
expect_exit 0 "$DISKSTACK" copy --quiet "crypt:xts-aes-256:k.bin:memdiff:file:expect.img" \
	"file:back2.img;create=4M"
cmp plain.img back2.img || fail "the fused path does not decrypt the oracle's ciphertext"
expect_exit 0 "$DISKSTACK" info "crypt:xts-aes-256:k.bin:memdiff:file:expect.img"
grep -q 'data-path.*fused' "$tmpdir/stdout" || fail "crypt over memdiff: is not fused"
expect_exit 0 "$DISKSTACK" info "$(spec_of k.bin enc.img)"
grep -q 'data-path.*copy' "$tmpdir/stdout" || fail "crypt over a file is fused"

# 3. A wrong key (one bit of the tweak key) reads noise, without an error:
# no sector of the result equals the plaintext's.
{ head -c 63 k.bin; tail -c 1 k.bin | od -An -tu1 | { read -r b; printf "\\$(printf %o $((b ^ 1)))"; }; } > wrong.bin
[ "$(wc -c < wrong.bin)" = 64 ] || fail "could not make the wrong key"
expect_exit 0 "$DISKSTACK" copy --quiet "$(spec_of wrong.bin enc.img)" "file:noise.img;create=4M"
same=$($py -I - plain.img noise.img <<'PYEOF'
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
print(sum(a[i:i + 512] == b[i:i + 512] for i in range(0, len(a), 512)))
PYEOF
)
[ "$same" = 0 ] || fail "$same sectors read back as plaintext with the wrong key"

# 4. Bad key files: refused with a clear message, nothing created.
head -c 63 k.bin > k63.bin
cat k.bin > k65.bin; printf x >> k65.bin
head -c 32 k.bin > same.bin; head -c 32 k.bin >> same.bin
for k in k63.bin k65.bin; do
	expect_exit 2 "$DISKSTACK" copy --quiet plain.img "$(spec_of $k 'new.img;create=4M')"
	expect_stderr "needs exactly 64 raw bytes"
done
expect_exit 2 "$DISKSTACK" copy --quiet plain.img "$(spec_of same.bin 'new.img;create=4M')"
expect_stderr "identical"
expect_exit 1 "$DISKSTACK" info "$(spec_of missing.bin enc.img)"
expect_stderr "cannot open key file 'missing.bin'"
[ ! -e new.img ] || fail "a bad key still created the inner file"

# 5. info shows the cipher and the key file, never the key.
hex=$(od -An -tx1 k.bin | tr -d ' \n')
expect_exit 0 "$DISKSTACK" info "$(spec_of k.bin enc.img)"
grep -q 'xts-aes-256' "$tmpdir/stdout" || fail "info does not show the cipher"
grep -q 'k.bin' "$tmpdir/stdout" || fail "info does not show the key file"
expect_exit 0 "$DISKSTACK" info --json "$(spec_of k.bin enc.img)"
for chunk in $(echo "$hex" | fold -w 8); do
	grep -qi "$chunk" "$tmpdir/stdout" && fail "info --json shows key bytes"
done
exit 0
