#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-client-bs-overread.sh: regression test for the nbd: backend
# reading past libnbd's extent array when a server answers a block-status
# query with fewer extents than asked (the loop ran to nr_entries * 2 words,
# but nr_entries already counts words: nbd_block_status(3)). The server
# here (an nbdkit sh plugin) answers each query with a single 4 KiB extent,
# of a data, zero, hole+zero or hole (allocated-looking data may be there)
# block; a sparse `diskstack copy` from it must be byte-exact, must not
# read the blocks that read as zero, and (in the ASan build) must not read
# out of bounds.
. "$(dirname "$0")/functions.sh"
requires_kind nbd
requires nbdkit cmp dd

blocks=64
src=$tmpdir/src.img
dd if=/dev/urandom of="$src" bs=4096 count=$blocks 2>/dev/null

# Block b's type: the pattern repeats every 8 blocks, with runs of equal
# types that the server still reports one extent at a time.
btype()
{
	case $(($1 % 8)) in
	0|5|6) echo data ;;
	1|2) echo zero ;;
	3|7) echo hole,zero ;;
	4) echo hole ;;
	esac
}
b=0
while [ $b -lt $blocks ]; do
	case $(btype $b) in
	*zero) dd if=/dev/zero of="$src" bs=4096 count=1 seek=$b conv=notrunc 2>/dev/null ;;
	esac
	b=$((b + 1))
done

# The plugin: one extent per query, from the queried offset to the end of
# its 4 KiB block (nbdkit-sh-plugin(3): "offset length type" lines).
cat > "$tmpdir/plugin.sh" <<PLUGIN
#!/bin/sh
case "\$1" in
get_size) echo $((blocks * 4096)) ;;
pread) exec dd if="$src" iflag=skip_bytes,count_bytes skip="\$4" count="\$3" status=none ;;
can_extents) exit 0 ;;
extents)
	case \$(( \$4 / 4096 % 8 )) in
	0|5|6) t= ;;
	1|2) t=zero ;;
	3|7) t=hole,zero ;;
	4) t=hole ;;
	esac
	echo "\$4 \$(( 4096 - \$4 % 4096 )) \$t" ;;
*) exit 2 ;;
esac
PLUGIN
chmod +x "$tmpdir/plugin.sh"

sock=$tmpdir/nbd.sock
log=$tmpdir/nbdkit.log
start_bg "$tmpdir/nbdkit.pid" nbdkit -f -r -U "$sock" -P "$tmpdir/ready" \
	--filter=log sh "$tmpdir/plugin.sh" logfile="$log"
_i=0
while [ ! -s "$tmpdir/ready" ] && [ $_i -lt 200 ]; do sleep 0.05; _i=$((_i + 1)); done
[ -s "$tmpdir/ready" ] || fail "nbdkit did not start"
uri="nbd+unix:///?socket=$sock"

# The destination starts as 0xff everywhere, so zero ranges must be
# written, not just skipped.
dd if=/dev/zero bs=4096 count=$blocks 2>/dev/null | tr '\000' '\377' > "$tmpdir/dst.img"
expect_exit 0 "$DISKSTACK" copy -q "nbd:$uri" "file:$tmpdir/dst.img"
cmp "$src" "$tmpdir/dst.img" || fail "sparse copy from short block-status replies differs"

# The copy went by block status: extents were asked for, and no read
# touched a block the server calls zero.
grep -q "Extents" "$log" || fail "no block-status query reached the server"
grep -o "Read id=[0-9]* offset=0x[0-9a-f]* count=0x[0-9a-f]*" "$log" > "$tmpdir/reads" ||
	fail "no read reached the server"
while read -r _ _ off cnt; do
	off=$((${off#offset=}))
	cnt=$((${cnt#count=}))
	b=$((off / 4096))
	while [ $((b * 4096)) -lt $((off + cnt)) ]; do
		case $(btype $b) in
		*zero) fail "block $b reads as zero but was read (offset $off, $cnt bytes)" ;;
		esac
		b=$((b + 1))
	done
done < "$tmpdir/reads"

echo "$0: OK"
