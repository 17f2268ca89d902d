#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbdkit-plugin-kinds.sh: every disk kind the other plugin tests do
# not open (they cover mem, memdiff, file, sql, crypt and error), each
# through `nbdkit diskstack SPEC` and libnbd (nbdkit-plugin.py kind): a
# fixed VHD (file: on a .vhd), sqldiff (reopened: the writes persist, the
# base is untouched), autocache (read-only, and under memdiff), prwrap,
# delay, striped, nbd (a `diskstack serve` on a Unix socket, writable and
# read-only), blob (flat and vhd1, from nginx on 127.0.0.1, read-only and
# under memdiff), and the ,dvd and ,removable trailers
# (docs/nbdkit-plugin.md). Size, read-only flag, contents, a round trip
# or EPERM for writes.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit-functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_plugin
requires_python nbd.NBD
requires cmp dd
script=$(cd "$(dirname "$0")" && pwd)/nbdkit-plugin.py
srcdir=${abs_top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$tmpdir"

# kind SPEC SIZE rw|ro [IMAGE|-] [written] [PLUGIN-ARGS...]: the spec
# through a captive nbdkit, checked by nbdkit-plugin.py. nbdinfo first
# reads the size through socket activation, which reports a spec that
# fails to open (a client started by --run would wait for ever: see
# docs/nbdkit-plugin.md).
kind()
{
	_spec=$1 _size=$2 _access=$3 _image=${4:--} _written=${5:-}
	shift 3
	[ $# -eq 0 ] || shift
	[ $# -eq 0 ] || shift
	_got=$(nbdinfo --size -- [ nbdkit "$plugin" "$_spec" "$@" ] 2> kind.err) ||
		{ cat kind.err >&2; fail "$_spec: nbdinfo failed"; }
	[ "$_got" = "$_size" ] || fail "$_spec: nbdinfo --size says $_got, want $_size"
	nbdkit -U - "$plugin" "$_spec" "$@" \
		--run "$py '$script' \"\$uri\" kind $_size $_access '$_image' $_written" \
		> kind.out 2> kind.err || { cat kind.out kind.err >&2; fail "$_spec"; }
}

# A base image with data in it, and a fixed VHD holding the same data
# (`diskstack create --type vhd`: the data, then a 512-byte footer).
dd if=/dev/urandom of=base.img bs=1M count=4 2>/dev/null
cp base.img base.orig
expect_exit 0 "$DISKSTACK" create -q d.vhd 4M --type vhd
dd if=base.img of=d.vhd conv=notrunc 2>/dev/null

# vhd1 (file: on a .vhd): the data without the footer; a round trip keeps
# the footer valid and the file's size.
kind file:d.vhd,ro 4194304 ro base.img
kind file:d.vhd 4194304 rw base.img
[ "$(wc -c < d.vhd)" -eq 4194816 ] || fail "the VHD changed size"
expect_exit 0 "$DISKSTACK" info file:d.vhd
grep -q "sector count: *8192" stdout || fail "the VHD's footer is no longer valid"
# A DVD (2048-byte multiple) is a read-only disk for NBD.
kind file:base.img,dvd 4194304 ro base.orig
kind mem:4M,removable 4194304 rw

# Decorators and striping.
kind prwrap:file:base.img 4194304 rw base.orig
cp base.orig base.img
kind delay:1/2:mem:4M 4194304 rw
kind 'delay:500us:file:base.img,ro' 4194304 ro base.orig
kind striped:64K:mem:2M+mem:2M 4194304 rw
kind 'striped:4K:mem:4M+file:base.img,ro' 8388608 ro

# sqldiff: over a file; the writes persist and the base is never written.
if [ "$(kind_missing sql)" = "" ]; then
	# (;create once: a second create refuses the existing file.)
	[ "$(nbdinfo --size -- [ nbdkit "$plugin" 'sqldiff:sd.dbhd;create:file:base.img' ])" = 4194304 ] ||
		fail "sqldiff;create"
	kind 'sqldiff:sd.dbhd:file:base.img' 4194304 rw base.orig
	kind 'sqldiff:sd.dbhd:file:base.img,ro' 4194304 ro - written
	cmp base.img base.orig || fail "sqldiff wrote to its base"
	# autocache: a read-only disk (the cache fills), then under memdiff
	# (a writable autocache: alone is refused, as by every frontend).
	kind 'autocache:k1:file:base.img,ro' 4194304 ro base.orig '' cache-dir=cache
	[ -d cache/k1 ] || fail "autocache: no cache under cache-dir=cache"
	kind 'memdiff:autocache:k1:file:base.img' 4194304 rw base.orig '' cache-dir=cache
	cmp base.img base.orig || fail "memdiff:autocache: wrote to its base"
fi

# nbd: a `diskstack serve` on a Unix socket, writable and read-only (a
# read-only export needs ,ro or a layer above it).
if [ "$(kind_missing nbd)" = "" ]; then
	serve s -U "$tmpdir/s.sock" file:base.img
	kind "nbd:nbd+unix:///?socket=$tmpdir/s.sock" 4194304 rw base.orig
	serve_stop s
	serve r -r -U "$tmpdir/r.sock" file:base.orig
	kind "nbd:nbd+unix:///?socket=$tmpdir/r.sock,ro" 4194304 ro base.orig
	kind "memdiff:nbd:nbd+unix:///?socket=$tmpdir/r.sock" 4194304 rw base.orig
	serve_stop r
fi

# blob: flat and vhd1 from nginx on 127.0.0.1 (read-only alone; writable
# under memdiff).
if [ "$(kind_missing blob)" = "" ]; then
	requires nginx
	mkdir www
	cp base.orig www/flat.img
	"$DISKSTACK" create -q www/d.vhd 4M --type vhd
	dd if=base.orig of=www/d.vhd conv=notrunc 2>/dev/null
	port=$(NGINX_PARENT_PID=$$ sh "$srcdir/tests/http/nginx-start.sh" "$tmpdir/nginx" "$tmpdir/www" 1) ||
		fail "nginx did not start"
	cleanup_fn 'kill "$(cat "$tmpdir/nginx/nginx.pid")" 2>/dev/null'
	base=http://127.0.0.1:$port
	kind "blob:flat:$base/flat.img,ro" 4194304 ro base.orig
	kind "blob:vhd1:$base/d.vhd,ro" 4194304 ro base.orig
	kind "memdiff:blob:vhd1:$base/d.vhd" 4194304 rw base.orig
	cmp www/flat.img base.orig || fail "blob: the served file changed"
fi
echo "$0: ok"
