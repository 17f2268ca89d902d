#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""xts-oracle.py: the independent oracle of the crypt: tests.

    xts-oracle.py encrypt|decrypt KEYFILE SECTOR_SIZE IN OUT

Encrypts (or decrypts) IN sector by sector with XTS-AES-256 from
python3-cryptography: the key is the 64 raw bytes of KEYFILE (data key,
then tweak key), the data unit is one sector, and the tweak of sector L is L
as a 16-byte little-endian number. Written without looking at diskstack's
code; exit status 77 when python3-cryptography is missing.
"""
import sys

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError:
    print("python3-cryptography is not installed", file=sys.stderr)
    sys.exit(77)


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("encrypt", "decrypt"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, keyfile, ss, src, dst = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    with open(keyfile, "rb") as f:
        key = f.read()
    if len(key) != 64:
        print("key must be 64 bytes", file=sys.stderr)
        return 2
    with open(src, "rb") as f:
        data = f.read()
    if len(data) % ss:
        print("input is not a whole number of sectors", file=sys.stderr)
        return 2
    out = bytearray()
    for lba in range(len(data) // ss):
        cipher = Cipher(algorithms.AES(key), modes.XTS(lba.to_bytes(16, "little")))
        op = cipher.encryptor() if mode == "encrypt" else cipher.decryptor()
        out += op.update(data[lba * ss:(lba + 1) * ss]) + op.finalize()
    with open(dst, "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
