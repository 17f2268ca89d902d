#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-tls.sh: `diskstack serve` with TLS: X.509 certificates and a
# PSK file generated here (certtool, psktool), nbdinfo and nbdcopy over
# TLS on Unix and TCP, plaintext clients refused under --tls=require and
# allowed under --tls=on, wrong keys and missing client certificates
# refused, and the STARTTLS state reset checked with a raw client (Python
# ssl): structured replies and meta contexts negotiated before STARTTLS
# are forgotten.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires certtool psktool nbdinfo nbdcopy cmp dd
requires_nbd_python

pki=$tmpdir/pki
cpki=$tmpdir/cpki   # the client's view: CA plus its own certificate
mkdir -p "$pki" "$cpki"
certtool --generate-privkey --outfile "$pki/ca-key.pem" 2>/dev/null
cat > "$tmpdir/ca.info" <<EOF
cn = diskstack test CA
ca
cert_signing_key
expiration_days = 2
EOF
certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" --template "$tmpdir/ca.info" \
	--outfile "$pki/ca-cert.pem" 2>/dev/null || fail "CA certificate"
# sign_cert NAME DIR: DIR/NAME-key.pem and DIR/NAME-cert.pem, made from the
# template $tmpdir/NAME.info and signed by the CA.
sign_cert()
{
	certtool --generate-privkey --outfile "$2/$1-key.pem" 2>/dev/null
	certtool --generate-certificate --load-ca-certificate "$pki/ca-cert.pem" \
		--load-ca-privkey "$pki/ca-key.pem" --load-privkey "$2/$1-key.pem" \
		--template "$tmpdir/$1.info" --outfile "$2/$1-cert.pem" 2>/dev/null ||
		fail "$1 certificate"
}
cat > "$tmpdir/server.info" <<EOF
organization = diskstack test
cn = localhost
dns_name = localhost
ip_address = 127.0.0.1
tls_www_server
encryption_key
signing_key
expiration_days = 2
EOF
sign_cert server "$pki"
cp "$pki/ca-cert.pem" "$cpki/"
cat > "$tmpdir/client.info" <<EOF
cn = diskstack test client
tls_www_client
encryption_key
signing_key
expiration_days = 2
EOF
sign_cert client "$cpki"
psktool -u alice -p "$tmpdir/keys.psk" >/dev/null 2>&1 || fail "psktool"
printf 'alice:%s\n' 000102030405060708090a0b0c0d0e0f > "$tmpdir/wrong.psk"

src=$tmpdir/src.img
dd if=/dev/urandom of="$src" bs=1M count=8 2>/dev/null

# ---- X.509, TLS required ----------------------------------------------------
sock=$tmpdir/x.sock
port=$(free_port)
serve x509 -U "$sock" -p "$port" --tls=require --tls-certificates "$pki" mem:8M
u="nbds+unix:///?socket=$sock&tls-certificates=$cpki"
nbdinfo "$u" > "$tmpdir/info" || fail "nbdinfo over TLS"
grep -q 'with TLS' "$tmpdir/info" || fail "nbdinfo did not report TLS"
nbdcopy "$src" "$u" || fail "nbdcopy into the export over TLS"
nbdcopy "$u" "$tmpdir/back.img" || fail "nbdcopy out of the export over TLS"
cmp "$src" "$tmpdir/back.img" || fail "TLS round trip differs"
# TCP, with the certificate checked against the host name.
nbdinfo --size "nbds://localhost:$port/?tls-certificates=$cpki" > "$tmpdir/size" ||
	fail "nbdinfo over TLS on TCP"
[ "$(cat "$tmpdir/size")" = 8388608 ] || fail "size over TLS on TCP"
# Plaintext clients are refused: LIST and GO get TLS_REQD.
if nbdinfo "nbd+unix:///?socket=$sock" > /dev/null 2>&1; then
	fail "a plaintext client was served under --tls=require"
fi
"$PY" -I - "$sock" <<'EOF' || fail "plaintext option refusals"
import sys, nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_DISABLE)
h.set_opt_mode(True)
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
for fn in (lambda: h.opt_list(lambda n, d: 0), h.opt_info):
    try:
        fn()
    except nbd.Error:
        continue
    raise AssertionError("option answered without TLS")
h.opt_abort()
EOF
# Before TLS every option but STARTTLS/ABORT is refused (raw client).
nbd_raw_py "$sock" "$pki/ca-cert.pem" <<'EOF' || fail "TLS_REQD before STARTTLS"
TLS_REQD = 0x80000005
for o in (8, 3, 6, 99):
    opt(o)
    assert reply()[0] == TLS_REQD, o
opt(5)                      # STARTTLS
assert reply()[0] == 1
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = ctx.wrap_socket(s, server_hostname="localhost")
opt(5, f=t)                 # a second STARTTLS: INVALID
assert reply(t)[0] == 0x80000003
opt(8, f=t)                 # now accepted
assert reply(t)[0] == 1
opt(2, f=t)                 # ABORT
assert reply(t)[0] == 1
t.close()
EOF
serve_stop x509
[ "$serve_status" = 0 ] || { cat "$tmpdir/x509.log"; fail "server exit status $serve_status"; }

# ---- X.509, TLS optional, client certificates required ---------------------------
sock=$tmpdir/v.sock
serve verify -U "$sock" --tls=on --tls-certificates "$pki" --tls-verify-peer mem:8M
nbdinfo --size "nbds+unix:///?socket=$sock&tls-certificates=$cpki" > /dev/null ||
	fail "a client with a certificate was refused"
mkdir -p "$tmpdir/nocert"
cp "$pki/ca-cert.pem" "$tmpdir/nocert/"
if nbdinfo --size "nbds+unix:///?socket=$sock&tls-certificates=$tmpdir/nocert" >/dev/null 2>&1; then
	fail "a TLS client without a certificate was served under --tls-verify-peer"
fi
# STARTTLS forgets what was negotiated before it (raw client): structured
# replies and the meta context set in plaintext are gone after the upgrade.
nbd_raw_py "$sock" "$cpki" <<'EOF' || fail "STARTTLS state reset"
opt(8)
assert reply()[0] == 1
q = b"base:allocation"
opt(10, struct.pack(">II", 0, 1) + struct.pack(">I", len(q)) + q)
assert reply()[0] == 4 and reply()[0] == 1
opt(5)
assert reply()[0] == 1
ctx = ssl.create_default_context(cafile=sys.argv[2] + "/ca-cert.pem")
ctx.load_cert_chain(sys.argv[2] + "/client-cert.pem", sys.argv[2] + "/client-key.pem")
t = ctx.wrap_socket(s, server_hostname="localhost")
opt(7, struct.pack(">IH", 0, 0), f=t)   # GO
flags = None
while True:
    ty, d = reply(t)
    if ty == 1:
        break
    assert ty == 3
    if struct.unpack(">H", d[:2])[0] == 0:
        flags = struct.unpack(">H", d[10:12])[0]
assert flags is not None and not flags & 0x80, "DF advertised after STARTTLS: %x" % flags
# READ: a simple reply (structured replies were forgotten).
t.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 7, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", rd(16, t))
assert magic == 0x67446698 and err == 0 and cookie == 7
rd(512, t)
# BLOCK_STATUS: no context survives, so EINVAL.
t.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 7, 8, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", rd(16, t))
assert magic == 0x67446698 and err == 22 and cookie == 8, (hex(magic), err)
t.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 9, 0, 0))   # DISC
t.close()
EOF
# --tls=on: plaintext is still allowed.
nbdinfo --size "nbd+unix:///?socket=$sock" > /dev/null || fail "plaintext refused under --tls=on"
serve_stop verify

# ---- PSK ------------------------------------------------------------------------
sock=$tmpdir/p.sock
serve psk -U "$sock" --tls=require --tls-psk "$tmpdir/keys.psk" mem:8M
u="nbds+unix://alice@/?socket=$sock&tls-psk-file=$tmpdir/keys.psk"
nbdcopy "$src" "$u" || fail "nbdcopy into the export over PSK"
nbdcopy "$u" "$tmpdir/back2.img" || fail "nbdcopy out of the export over PSK"
cmp "$src" "$tmpdir/back2.img" || fail "PSK round trip differs"
nbdinfo "$u" | grep -q 'with TLS' || fail "nbdinfo over PSK"
if nbdinfo "nbds+unix://alice@/?socket=$sock&tls-psk-file=$tmpdir/wrong.psk" >/dev/null 2>&1; then
	fail "a wrong PSK was accepted"
fi
if nbdinfo "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
	fail "a plaintext client was served under --tls=require (PSK)"
fi
serve_stop psk
[ "$serve_status" = 0 ] || { cat "$tmpdir/psk.log"; fail "server exit status $serve_status"; }
grep -q 'TLS handshake failed' "$tmpdir/psk.log" || fail "the wrong key was not logged"

# Bad credentials are usage errors.
expect_exit 2 "$DISKSTACK" serve --tls=require mem:1M
expect_stderr "needs --tls-certificates"
expect_exit 1 "$DISKSTACK" serve --tls-certificates "$tmpdir/nonexistent" mem:1M
expect_stderr "server-cert.pem"
echo "$0: OK"
