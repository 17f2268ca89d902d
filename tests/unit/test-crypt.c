/* SPDX-License-Identifier: MIT */
/*
 * test-crypt.c: the XTS-AES-256 decorator (storage/crypt.c): the IEEE 1619
 * vector, the round trip of docs/openvmm-compat.md §7.3, an independent XTS
 * oracle built from AES-256-ECB at 512- and 4096-byte sectors with odd
 * buffer shapes, wrong keys, key-file errors, the caller's buffer left
 * alone, the forwarding rules of §5.4 (unmap raw, flush, PR, FUA, eject
 * refused, unmap behaviour fold), encrypted write-zeroes, block status,
 * chunked writes, several reactors and disks at once, describe, and the
 * contract suites; the fused path (the inner RAM layer applies the
 * cipher): which stacks take it, that it gives byte for byte what the copy
 * path gives (DISKSTACK_CRYPT_NOFUSE) over mem: and memdiff: at 512 and
 * 4096, and the copy path's own checks.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include "common/compiler.h"
#include "storage/decorators/crypt.h"
#include "storage/backends/filedisk.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

static char err[512];

/* ---- helpers ------------------------------------------------------------- */

/* A key whose data half is all @a and tweak half all @b. */
static void key_halves(uint8_t key[CRYPT_KEY_BYTES], uint8_t a, uint8_t b)
{
	memset(key, a, CRYPT_KEY_BYTES / 2);
	memset(key + CRYPT_KEY_BYTES / 2, b, CRYPT_KEY_BYTES / 2);
}

/* A key of pseudo-random bytes from @seed. */
static void key_random(uint8_t key[CRYPT_KEY_BYTES], uint64_t seed)
{
	for (unsigned i = 0; i < CRYPT_KEY_BYTES; i += 8) {
		uint64_t v = tu_rand(&seed);

		memcpy(key + i, &v, 8);
	}
}

static struct disk *ram(uint64_t bytes, uint32_t ss)
{
	struct disk *d;

	if (ramdisk_new(bytes, ss, false, &d, err, sizeof(err)) != 0)
		fail_msg("ramdisk_new: %s", err);
	return d;
}

/* Wraps @lower (one reference is passed) in a crypt disk; asserts. */
static struct disk *crypt_over(struct disk *lower, const uint8_t key[CRYPT_KEY_BYTES])
{
	struct disk *d;

	if (crypt_new(key, NULL, lower, &d, err, sizeof(err)) != 0)
		fail_msg("crypt_new: %s", err);
	return d;
}

static void fill_random(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = tu_rand(&seed);

		memcpy(p + i, &v, MIN((size_t)8, len - i));
	}
}

/*
 * The oracle: XTS-AES-256 written from its definition (IEEE 1619) on top of
 * AES-256-ECB, independent of OpenSSL's XTS code. One data unit of @len
 * bytes (a multiple of 16) with tweak @lba (128-bit little-endian).
 */
static void oracle_xts(const uint8_t key[CRYPT_KEY_BYTES], uint64_t lba, const uint8_t *in,
		       uint8_t *out, size_t len)
{
	EVP_CIPHER_CTX *k1 = EVP_CIPHER_CTX_new(), *k2 = EVP_CIPHER_CTX_new();
	uint8_t t[16] = { 0 }, x[16], y[16];
	int outl;

	assert_non_null(k1);
	assert_non_null(k2);
	assert_int_equal(EVP_EncryptInit_ex(k1, EVP_aes_256_ecb(), NULL, key, NULL), 1);
	assert_int_equal(EVP_EncryptInit_ex(k2, EVP_aes_256_ecb(), NULL, key + 32, NULL), 1);
	EVP_CIPHER_CTX_set_padding(k1, 0);
	EVP_CIPHER_CTX_set_padding(k2, 0);
	for (unsigned b = 0; b < 8; b++)
		t[b] = (uint8_t)(lba >> (8 * b));
	assert_int_equal(EVP_EncryptUpdate(k2, t, &outl, t, 16), 1);
	for (size_t j = 0; j < len; j += 16) {
		unsigned carry = 0;

		for (unsigned b = 0; b < 16; b++)
			x[b] = in[j + b] ^ t[b];
		assert_int_equal(EVP_EncryptUpdate(k1, y, &outl, x, 16), 1);
		for (unsigned b = 0; b < 16; b++)
			out[j + b] = y[b] ^ t[b];
		/* t *= alpha in GF(2^128), little-endian. */
		for (unsigned b = 0; b < 16; b++) {
			unsigned nc = t[b] >> 7;

			t[b] = (uint8_t)(t[b] << 1 | carry);
			carry = nc;
		}
		if (carry)
			t[0] ^= 0x87;
	}
	EVP_CIPHER_CTX_free(k1);
	EVP_CIPHER_CTX_free(k2);
}

/* Encrypts @n sectors of @in (first LBA @lba) with the oracle. */
static void oracle_sectors(const uint8_t key[CRYPT_KEY_BYTES], uint32_t ss, uint64_t lba,
			   const uint8_t *in, uint8_t *out, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		oracle_xts(key, lba + i, in + i * ss, out + i * ss, ss);
}

static int rw_iov(struct disk *d, enum disk_op op, uint64_t sector, const struct iovec *iov,
		  int iovcnt)
{
	struct disk_io io = { .op = op, .sector = sector, .iov = iov, .iovcnt = iovcnt };

	return disk_sync_io(d, &io);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* ---- known answers ---------------------------------------------------------- */

/* §5.1: the IEEE 1619 XTS-AES-256 key (digits of e and pi), tweak 0, the
 * 32 bytes 00..1f. XTS encrypts 16-byte blocks in order, so the first 32
 * bytes of a 512-byte data unit with that tweak are the vector's. */
static void test_crypt_ieee_vector(void **state UNUSED)
{
	static const uint8_t key[64] = {
		0x27, 0x18, 0x28, 0x18, 0x28, 0x45, 0x90, 0x45, 0x23, 0x53, 0x60, 0x28, 0x74, 0x71,
		0x35, 0x26, 0x62, 0x49, 0x77, 0x57, 0x24, 0x70, 0x93, 0x69, 0x99, 0x59, 0x57, 0x49,
		0x66, 0x96, 0x76, 0x27, 0x31, 0x41, 0x59, 0x26, 0x53, 0x58, 0x97, 0x93, 0x23, 0x84,
		0x62, 0x64, 0x33, 0x83, 0x27, 0x95, 0x02, 0x88, 0x41, 0x97, 0x16, 0x93, 0x99, 0x37,
		0x51, 0x05, 0x82, 0x09, 0x74, 0x94, 0x45, 0x92,
	};
	static const uint8_t want[32] = {
		0x3a, 0x06, 0x0a, 0x8c, 0xad, 0x11, 0x5a, 0x6f, 0x44, 0x57, 0x2e, 0x37, 0x59, 0xe4,
		0x3c, 0x8f, 0xca, 0xd8, 0xbf, 0xcb, 0x23, 0x3f, 0xf6, 0xad, 0x71, 0xb7, 0xc1, 0xe7,
		0xca, 0x65, 0x15, 0x08,
	};
	struct mockdisk m = { 0 };
	struct mockdisk_opts o = { .sectors = 8, .sector_size = 512 };
	struct disk *d = crypt_over(mockdisk_new(&m, &o), key);
	uint8_t pt[1024], back[1024], oracle[512];

	memset(pt, 0, sizeof(pt));
	for (unsigned i = 0; i < 32; i++)
		pt[i] = pt[512 + i] = (uint8_t)i;
	assert_int_equal(disk_sync_write(d, 0, pt, sizeof(pt), 0), DISK_OK);
	assert_memory_equal(m.data, want, sizeof(want));
	/* Tweak 1 gives another ciphertext for the same plaintext. */
	assert_memory_not_equal(m.data + 512, want, sizeof(want));
	/* The oracle agrees on the whole sector, for both tweaks. */
	oracle_xts(key, 0, pt, oracle, 512);
	assert_memory_equal(m.data, oracle, 512);
	oracle_xts(key, 1, pt + 512, oracle, 512);
	assert_memory_equal(m.data + 512, oracle, 512);
	assert_int_equal(disk_sync_read(d, 0, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, pt, sizeof(pt));
	disk_unref(d);
	mockdisk_release(&m);
}

/* §7.3: a 64 KiB round trip at LBA 10 over a 2 MiB RAM disk, key halves
 * 00.. and 01... */
static void test_crypt_roundtrip_64k(void **state UNUSED)
{
	uint8_t key[CRYPT_KEY_BYTES];
	struct disk *d;
	uint8_t *pt = malloc(65536), *back = malloc(65536), *raw = malloc(65536);

	key_halves(key, 0x00, 0x01);
	d = crypt_over(ram(2 << 20, 512), key);
	assert_int_equal(disk_sector_count(d), 4096);
	tu_fill(pt, 65536, 7, 0);
	assert_int_equal(disk_sync_write(d, 10, pt, 65536, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 10, back, 65536), DISK_OK);
	assert_memory_equal(back, pt, 65536);
	/* What is stored below is not the plaintext. */
	assert_int_equal(disk_sync_read(disk_lower(d), 10, raw, 65536), DISK_OK);
	for (unsigned s = 0; s < 128; s++)
		assert_memory_not_equal(raw + s * 512, pt + s * 512, 512);
	disk_unref(d);
	free(pt);
	free(back);
	free(raw);
}

/* The ciphertext below matches the independent oracle byte for byte, at
 * 512 and 4096 bytes per sector, at low and 64-bit LBAs, whatever the shape
 * of the caller's buffers (sectors split across iovec entries). */
static void test_crypt_ieee_vector(void **state);
static void test_crypt_write_zeroes_encrypts(void **state);
static void fused_vs_copy(uint32_t ss, bool diff);

static void oracle_check(uint32_t ss)
{
	static const size_t shapes[][4] = {
		{ 1u << 20 },                 /* one entry */
		{ 100, 700, 3000, 9 },        /* sectors straddle entries */
		{ 512, 1536, 4096, 8192 },    /* whole sectors per entry */
		{ 4095, 1, 4097, 511 },
	};
	const uint64_t lbas[] = { 0, 3, (1ull << 32) + 5, (1ull << 40) / 4096 * 7 };
	const uint64_t n = 24;                       /* sectors per request */
	const size_t len = n * ss;
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t *pt = malloc(len), *want = malloc(len), *raw = malloc(len), *back = malloc(len);
	struct iovec iov[256];
	struct disk *d;

	key_random(key, 0x5eed + ss);
	/* A sparse RAM disk big enough for LBAs above 2^32. */
	d = crypt_over(ram(ss == 512 ? (4ull << 40) : (32ull << 40), ss), key);
	assert_int_equal(disk_sector_size(d), ss);
	for (unsigned li = 0; li < ARRAY_SIZE(lbas); li++) {
		uint64_t lba = lbas[li];

		for (unsigned si = 0; si < ARRAY_SIZE(shapes); si++) {
			unsigned ns = shapes[si][1] ? 4 : 1;
			int cnt;

			fill_random(pt, len, lba * 31 + si);
			oracle_sectors(key, ss, lba, pt, want, n);
			cnt = tu_split_iov_sizes(pt, len, shapes[si], ns, iov, ARRAY_SIZE(iov));
			assert_int_equal(rw_iov(d, DISK_OP_WRITE, lba, iov, cnt), DISK_OK);
			assert_int_equal(disk_sync_read(disk_lower(d), lba, raw, len), DISK_OK);
			if (memcmp(raw, want, len) != 0)
				fail_msg("ss %u lba %llu shape %u: ciphertext differs from the oracle", ss,
					 (unsigned long long)lba, si);
			/* Read back through another shape. */
			memset(back, 0xee, len);
			cnt = tu_split_iov_sizes(back, len, shapes[(si + 1) % ARRAY_SIZE(shapes)],
						 shapes[(si + 1) % ARRAY_SIZE(shapes)][1] ? 4 : 1,
						 iov, ARRAY_SIZE(iov));
			assert_int_equal(rw_iov(d, DISK_OP_READ, lba, iov, cnt), DISK_OK);
			assert_memory_equal(back, pt, len);
		}
	}
	disk_unref(d);
	free(pt);
	free(want);
	free(raw);
	free(back);
}

static void test_crypt_oracle_512(void **state UNUSED) { oracle_check(512); }
static void test_crypt_oracle_4096(void **state UNUSED) { oracle_check(4096); }

/* Which implementation a crypt disk uses, from its description. */
static bool uses_evp(struct disk *d)
{
	struct tu_described cap;

	tu_describe(d, &cap);
	assert_non_null(strstr(cap.text, "implementation=OpenSSL "));
	return strstr(cap.text, "implementation=OpenSSL EVP\n") != NULL;
}

/* The same checks through the plain EVP path (DISKSTACK_CRYPT_EVP=1),
 * which is what the provider path must agree with. */
static void test_crypt_evp_path(void **state UNUSED)
{
	uint8_t key[CRYPT_KEY_BYTES];
	struct disk *d;

	key_random(key, 4);
	d = crypt_over(ram(1 << 20, 512), key);
	/* OpenSSL 3 builds take the provider path by default. */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	assert_false(uses_evp(d));
#endif
	disk_unref(d);
	assert_int_equal(setenv("DISKSTACK_CRYPT_EVP", "1", 1), 0);
	d = crypt_over(ram(1 << 20, 512), key);
	assert_true(uses_evp(d));
	disk_unref(d);
	test_crypt_ieee_vector(NULL);
	oracle_check(512);
	oracle_check(4096);
	test_crypt_write_zeroes_encrypts(NULL);
	fused_vs_copy(512, true);
	fused_vs_copy(4096, false);
	assert_int_equal(unsetenv("DISKSTACK_CRYPT_EVP"), 0);
}

/* ---- the fused path ---------------------------------------------------------------------- */

/* memdiff: a RAM layer of @top_bytes over @lower as a layer (one reference
 * of @lower is passed). */
static struct disk *memdiff_over(struct disk *lower, uint64_t top_bytes)
{
	struct layered_entry e[2] = { { 0 } };
	struct disk *d;

	if (ramlayer_new(top_bytes, 0, &e[0].layer, err, sizeof(err)) != 0)
		fail_msg("ramlayer_new: %s", err);
	assert_int_equal(disklayer_new(lower, &e[1].layer), 0);
	if (layered_disk_new(e, 2, false, &d, err, sizeof(err)) != 0)
		fail_msg("layered_disk_new: %s", err);
	return d;
}

/* A crypt disk that takes the copy path whatever is below. */
static struct disk *crypt_over_nofuse(struct disk *lower, const uint8_t key[CRYPT_KEY_BYTES])
{
	struct disk *d;

	assert_int_equal(setenv("DISKSTACK_CRYPT_NOFUSE", "1", 1), 0);
	d = crypt_over(lower, key);
	assert_int_equal(unsetenv("DISKSTACK_CRYPT_NOFUSE"), 0);
	return d;
}

static bool is_fused(struct disk *d)
{
	struct tu_described cap;

	tu_describe(d, &cap);
	assert_non_null(strstr(cap.text, "data-path="));
	return strstr(cap.text, "data-path=fused") != NULL;
}

/* One read and one write of @d; returns how many went the fused way (0..2). */
static uint64_t fused_delta(struct disk *d)
{
	uint64_t r0, w0, r1, w1;
	uint8_t buf[8192];

	crypt_fused_counts(d, &r0, &w0);
	tu_fill(buf, sizeof(buf), 1, 0);
	assert_int_equal(disk_sync_write(d, 8, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 8, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 1, 0), -1);
	crypt_fused_counts(d, &r1, &w1);
	assert_int_equal(r1 - r0, w1 - w0);
	return (r1 - r0) + (w1 - w0);
}

/* Which inner disks get the fused path, and that requests take it. */
static void test_crypt_fused_taken(void **state UNUSED)
{
	struct filedisk_opts fo = { .create = true, .create_size = 1 << 20 };
	struct layered_entry rc[2] = { { 0 } };
	uint8_t key[CRYPT_KEY_BYTES], buf[512];
	struct disk *d, *inner, *f;
	uint64_t r, w;

	key_random(key, 30);
	/* mem: and memdiff: */
	d = crypt_over(ram(1 << 20, 512), key);
	assert_true(is_fused(d));
	assert_int_equal(fused_delta(d), 2);
	assert_false(disk_get_info(d)->caps & DISK_CAP_XFORM);
	/* Zero sectors stay on the old path (a range check only). */
	crypt_fused_counts(d, &r, &w);
	assert_int_equal(disk_sync_read(d, 2048, buf, 0), DISK_OK);
	assert_int_equal(disk_sync_write(d, 2048, buf, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_write(d, 2049, buf, 0, 0), DISK_ILLEGAL_BLOCK);
	crypt_fused_counts(d, &r, &w);
	assert_int_equal(r + w, 2);
	disk_unref(d);
	d = crypt_over(memdiff_over(ram(1 << 20, 512), 0), key);
	assert_true(is_fused(d));
	assert_int_equal(fused_delta(d), 2);
	disk_unref(d);
	/* Told not to. */
	d = crypt_over_nofuse(ram(1 << 20, 512), key);
	assert_false(is_fused(d));
	assert_int_equal(fused_delta(d), 0);
	disk_unref(d);
	/* A file. */
	if (filedisk_open(tu_path("fused.img"), &fo, &f, err, sizeof(err)) != 0)
		fail_msg("filedisk_open: %s", err);
	d = crypt_over(f, key);
	assert_false(is_fused(d));
	assert_int_equal(fused_delta(d), 0);
	disk_unref(d);
	/* A RAM read cache over RAM. */
	assert_int_equal(ramlayer_new(0, 0, &rc[0].layer, err, sizeof(err)), 0);
	rc[0].read_cache = true;
	assert_int_equal(disklayer_new(ram(1 << 20, 512), &rc[1].layer), 0);
	assert_int_equal(layered_disk_new(rc, 2, false, &inner, err, sizeof(err)), 0);
	d = crypt_over(inner, key);
	assert_false(is_fused(d));
	assert_int_equal(fused_delta(d), 0);
	disk_unref(d);
	/* crypt over crypt over mem: the inner one only. */
	inner = crypt_over(ram(1 << 20, 512), key);
	key_random(key, 31);
	d = crypt_over(disk_ref(inner), key);
	assert_false(is_fused(d));
	assert_int_equal(fused_delta(d), 0);
	crypt_fused_counts(inner, &r, &w);
	assert_int_equal(r, 1);
	assert_int_equal(w, 1);
	disk_unref(d);
	disk_unref(inner);
}

struct rand_iov {
	uint64_t *seed;
	uint32_t ss;
	bool whole;
};

static size_t rand_iov_size(void *arg, int i UNUSED)
{
	struct rand_iov *r = arg;

	return r->whole ? (size_t)(tu_rand(r->seed) % 3 + 1) * r->ss
			: (size_t)(tu_rand(r->seed) % (3 * r->ss)) + 1;
}

/* Splits @buf into entries of 1 byte to 3 sectors, so sectors straddle
 * entries (and every few requests, whole-sector entries). */
static int rand_iov(uint8_t *buf, size_t len, uint32_t ss, uint64_t *seed, struct iovec *iov,
		    int max)
{
	struct rand_iov r = { seed, ss, tu_rand(seed) % 4 == 0 };

	return tu_split_iov(buf, len, rand_iov_size, &r, iov, max);
}

/*
 * The fused path against the copy path: one seeded sequence of writes (odd
 * buffer shapes), write-zeroes, raw unmaps and reads runs on two identical
 * stacks, one fused and one with DISKSTACK_CRYPT_NOFUSE. Every read gives
 * the same bytes on both (written sectors, never-written ones, sectors of a
 * memdiff lower layer, beyond it, unmapped), written sectors read back as
 * written, and at the end the inner disks hold the same bytes, which are
 * the oracle's ciphertext where written.
 */
static void fused_vs_copy(uint32_t ss, bool diff)
{
	const uint64_t n = 256, low_n = 192, max_req = 40;
	const size_t len = n * ss;
	uint64_t seed = tu_seed(diff ? "fused_vs_copy_diff" : "fused_vs_copy") + ss;
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t *model = calloc(1, len), *known = calloc(1, n);
	uint8_t *a = malloc(max_req * ss), *b = malloc(max_req * ss), *pt = malloc(max_req * ss);
	uint8_t *ra = malloc(len), *rb = malloc(len), *want = malloc(ss);
	struct iovec iov[1024];
	struct disk *fa, *fb, *ia, *ib;
	uint64_t reads, writes;

	key_random(key, seed);
	if (diff) {
		/* Lower layers hold the same raw data in their first half. */
		struct disk *la = ram(low_n * ss, ss), *lb = ram(low_n * ss, ss);

		fill_random(ra, low_n / 2 * ss, seed);
		assert_int_equal(disk_sync_write(la, 0, ra, low_n / 2 * ss, 0), DISK_OK);
		assert_int_equal(disk_sync_write(lb, 0, ra, low_n / 2 * ss, 0), DISK_OK);
		ia = memdiff_over(la, len);
		ib = memdiff_over(lb, len);
	} else {
		ia = ram(len, ss);
		ib = ram(len, ss);
	}
	fa = crypt_over(disk_ref(ia), key);
	fb = crypt_over_nofuse(disk_ref(ib), key);
	assert_true(is_fused(fa));
	assert_false(is_fused(fb));

	for (unsigned op = 0; op < 300; op++) {
		unsigned kind = (unsigned)(tu_rand(&seed) % 10);
		uint64_t cnt = tu_rand(&seed) % max_req + 1;
		uint64_t lba = tu_rand(&seed) % (n - cnt + 1);
		int nv;

		if (kind < 4) {
			fill_random(pt, cnt * ss, seed + op);
			memcpy(a, pt, cnt * ss);
			nv = rand_iov(a, cnt * ss, ss, &seed, iov, ARRAY_SIZE(iov));
			assert_int_equal(rw_iov(fa, DISK_OP_WRITE, lba, iov, nv), DISK_OK);
			assert_memory_equal(a, pt, cnt * ss);   /* never written to */
			assert_int_equal(disk_sync_write(fb, lba, pt, cnt * ss, 0), DISK_OK);
			memcpy(model + lba * ss, pt, cnt * ss);
			memset(known + lba, 1, cnt);
		} else if (kind == 4) {
			assert_int_equal(disk_sync_write_zeroes(fa, lba, cnt, 0), DISK_OK);
			assert_int_equal(disk_sync_write_zeroes(fb, lba, cnt, 0), DISK_OK);
			memset(model + lba * ss, 0, cnt * ss);
			memset(known + lba, 1, cnt);
		} else if (kind == 5) {
			assert_int_equal(disk_sync_unmap(fa, lba, cnt, 0), DISK_OK);
			assert_int_equal(disk_sync_unmap(fb, lba, cnt, 0), DISK_OK);
			memset(known + lba, 0, cnt);
		} else {
			memset(a, 0x11, cnt * ss);
			memset(b, 0x22, cnt * ss);
			nv = rand_iov(a, cnt * ss, ss, &seed, iov, ARRAY_SIZE(iov));
			assert_int_equal(rw_iov(fa, DISK_OP_READ, lba, iov, nv), DISK_OK);
			assert_int_equal(disk_sync_read(fb, lba, b, cnt * ss), DISK_OK);
			if (memcmp(a, b, cnt * ss) != 0)
				fail_msg("ss %u diff %d op %u: read of %llu+%llu differs between the "
					 "fused and the copy path", ss, diff, op,
					 (unsigned long long)lba, (unsigned long long)cnt);
			for (uint64_t i = 0; i < cnt; i++)
				if (known[lba + i])
					assert_memory_equal(a + i * ss, model + (lba + i) * ss, ss);
		}
	}
	/* Both paths agree on the whole disk and on what is stored. */
	assert_int_equal(disk_sync_read(fa, 0, ra, len), DISK_OK);
	assert_int_equal(disk_sync_read(fb, 0, rb, len), DISK_OK);
	assert_memory_equal(ra, rb, len);
	assert_int_equal(disk_sync_read(ia, 0, ra, len), DISK_OK);
	assert_int_equal(disk_sync_read(ib, 0, rb, len), DISK_OK);
	assert_memory_equal(ra, rb, len);
	for (uint64_t i = 0; i < n; i++) {
		if (!known[i])
			continue;
		oracle_xts(key, i, model + i * ss, want, ss);
		assert_memory_equal(ra + i * ss, want, ss);
	}
	crypt_fused_counts(fa, &reads, &writes);
	assert_true(reads > 0 && writes > 0);
	crypt_fused_counts(fb, &reads, &writes);
	assert_true(reads == 0 && writes == 0);
	disk_unref(fa);
	disk_unref(fb);
	disk_unref(ia);
	disk_unref(ib);
	free(model);
	free(known);
	free(a);
	free(b);
	free(pt);
	free(ra);
	free(rb);
	free(want);
}

static void test_crypt_fused_vs_copy_512(void **state UNUSED) { fused_vs_copy(512, false); }
static void test_crypt_fused_vs_copy_4096(void **state UNUSED) { fused_vs_copy(4096, false); }
static void test_crypt_fused_vs_copy_memdiff_512(void **state UNUSED) { fused_vs_copy(512, true); }
static void test_crypt_fused_vs_copy_memdiff_4096(void **state UNUSED) { fused_vs_copy(4096, true); }

/*
 * An image written through the fused path (crypt over memdiff: over a
 * file, or a mock disk at 4 KiB sectors) is, once the RAM layer's contents are copied into the file, what
 * crypt over the file alone reads back; and ciphertext written through the
 * copy path into a file reads back through the fused memdiff's lower layer.
 */
static void test_crypt_fused_image_reads_back(void **state UNUSED)
{
	static const uint32_t sizes[] = { 512, 4096 };

	for (unsigned si = 0; si < ARRAY_SIZE(sizes); si++) {
		const uint32_t ss = sizes[si];
		const size_t len = 64 * (size_t)ss;
		struct filedisk_opts fo = { .create = true, .create_size = len };
		struct mockdisk m = { 0 };
		struct mockdisk_opts mo = { .sectors = 64, .sector_size = ss };
		uint8_t key[CRYPT_KEY_BYTES];
		uint8_t *pt = malloc(len), *back = malloc(len), *raw = malloc(len);
		struct disk *file, *md, *fused, *plain;
		char name[32];

		snprintf(name, sizeof(name), "img-%u.img", ss);
		key_random(key, 40 + ss);
		/* Files have 512-byte sectors; a mock disk stands in at 4 KiB. */
		if (ss == 512 && filedisk_open(tu_path(name), &fo, &file, err, sizeof(err)) != 0)
			fail_msg("filedisk_open: %s", err);
		if (ss != 512)
			file = mockdisk_new(&m, &mo);
		assert_int_equal(disk_sector_size(file), ss);
		/* Copy path into the file: sectors 0..31. */
		plain = crypt_over(disk_ref(file), key);
		assert_false(is_fused(plain));
		tu_fill(pt, len, 41, 0);
		assert_int_equal(disk_sync_write(plain, 0, pt, len / 2, 0), DISK_OK);
		/* Fused path into the RAM layer above: sectors 16..63. */
		md = memdiff_over(disk_ref(file), 0);
		fused = crypt_over(disk_ref(md), key);
		assert_true(is_fused(fused));
		assert_int_equal(disk_sync_write(fused, 16, pt + 16 * ss, len - 16 * ss, 0), DISK_OK);
		/* Reads spanning the lower file and the RAM layer. */
		assert_int_equal(disk_sync_read(fused, 0, back, len), DISK_OK);
		assert_memory_equal(back, pt, len);
		/* Move the RAM layer's ciphertext into the file. */
		assert_int_equal(disk_sync_read(md, 16, raw, len - 16 * ss), DISK_OK);
		assert_int_equal(disk_sync_write(file, 16, raw, len - 16 * ss, 0), DISK_OK);
		memset(back, 0, len);
		assert_int_equal(disk_sync_read(plain, 0, back, len), DISK_OK);
		assert_memory_equal(back, pt, len);
		/* And it is the oracle's ciphertext. */
		assert_int_equal(disk_sync_read(file, 0, raw, len), DISK_OK);
		oracle_sectors(key, ss, 0, pt, back, 64);
		assert_memory_equal(raw, back, len);
		disk_unref(fused);
		disk_unref(md);
		disk_unref(plain);
		disk_unref(file);
		if (ss != 512)
			mockdisk_release(&m);
		free(pt);
		free(back);
		free(raw);
	}
}

/* The copy path over RAM (DISKSTACK_CRYPT_NOFUSE): the oracle, the wrong
 * key, the contract, and the fused/copy comparison with EVP. */
static void test_crypt_wrong_key_reads_garbage(void **state);
static void test_crypt_contract(void **state);

static void test_crypt_copy_path(void **state UNUSED)
{
	assert_int_equal(setenv("DISKSTACK_CRYPT_NOFUSE", "1", 1), 0);
	oracle_check(512);
	oracle_check(4096);
	test_crypt_wrong_key_reads_garbage(NULL);
	test_crypt_contract(NULL);
	assert_int_equal(unsetenv("DISKSTACK_CRYPT_NOFUSE"), 0);
}

/* ---- keys ------------------------------------------------------------------------- */

/* Data written with one key reads back with another as noise: no error, not
 * the plaintext, not zeroes. */
static void test_crypt_wrong_key_reads_garbage(void **state UNUSED)
{
	uint8_t ka[CRYPT_KEY_BYTES], kb[CRYPT_KEY_BYTES];
	uint8_t pt[8192], back[8192];
	struct disk *mem = ram(1 << 20, 512), *a, *b;

	key_random(ka, 1);
	memcpy(kb, ka, sizeof(kb));
	kb[63] ^= 1;                          /* one bit of the tweak key */
	tu_fill(pt, sizeof(pt), 3, 0);
	a = crypt_over(disk_ref(mem), ka);
	assert_int_equal(disk_sync_write(a, 100, pt, sizeof(pt), 0), DISK_OK);
	disk_unref(a);
	b = crypt_over(disk_ref(mem), kb);
	assert_int_equal(disk_sync_read(b, 100, back, sizeof(back)), DISK_OK);
	for (unsigned s = 0; s < sizeof(pt) / 512; s++) {
		assert_memory_not_equal(back + s * 512, pt + s * 512, 512);
		assert_false(tu_is_zero(back + s * 512, 512));
	}
	disk_unref(b);
	/* The right key still works (nothing was changed by reading). */
	a = crypt_over(disk_ref(mem), ka);
	assert_int_equal(disk_sync_read(a, 100, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, pt, sizeof(pt));
	disk_unref(a);
	disk_unref(mem);
}

static int load_key_of_size(size_t n, uint8_t key[CRYPT_KEY_BYTES])
{
	uint8_t buf[256];
	const char *p = tu_path("key.bin");

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	assert_true(n <= sizeof(buf));
	write_file(p, buf, n);
	err[0] = '\0';
	return crypt_key_load(p, key, err, sizeof(err));
}

static void test_crypt_key_file_sizes(void **state UNUSED)
{
	static const size_t bad[] = { 0, 1, 32, 63, 65, 128, 256 };
	uint8_t key[CRYPT_KEY_BYTES];

	assert_int_equal(load_key_of_size(64, key), 0);
	assert_int_equal(key[0], 11);
	assert_int_equal(key[63], (uint8_t)(63 * 37 + 11));
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(load_key_of_size(bad[i], key), -EINVAL);
		assert_non_null(strstr(err, "exactly 64 raw bytes"));
		/* The key is wiped on failure. */
		assert_true(tu_is_zero(key, sizeof(key)));
	}
	assert_int_equal(load_key_of_size(63, key), -EINVAL);
	assert_non_null(strstr(err, "holds 63 bytes"));
	assert_int_equal(load_key_of_size(65, key), -EINVAL);
	assert_non_null(strstr(err, "holds 65 bytes"));
}

static void test_crypt_key_file_errors(void **state UNUSED)
{
	uint8_t key[CRYPT_KEY_BYTES], same[CRYPT_KEY_BYTES];
	struct disk *d, *mem;
	char spec[1024];
	struct stat st;

	/* Identical halves. */
	key_halves(same, 0x42, 0x42);
	write_file(tu_path("same.bin"), same, sizeof(same));
	assert_int_equal(crypt_key_load(tu_path("same.bin"), key, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "identical"));
	mem = ram(1 << 20, 512);
	assert_int_equal(crypt_new(same, NULL, mem, &d, err, sizeof(err)), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err, "identical"));
	disk_unref(mem);   /* still ours after a failed open */
	/* Missing file, directory. */
	assert_int_equal(crypt_key_load(tu_path("nonexistent"), key, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nonexistent"));
	assert_int_equal(crypt_key_load(tu_tmpdir(), key, err, sizeof(err)), -EISDIR);

	/* Through the resolver: a bad key opens (and creates) nothing. */
	write_file(tu_path("short.bin"), same, 63);
	snprintf(spec, sizeof(spec), "crypt:xts-aes-256:%s:file:%s;create=1M", tu_path("short.bin"),
		 tu_path("never.img"));
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "holds 63 bytes"));
	assert_int_equal(stat(tu_path("never.img"), &st), -1);
	snprintf(spec, sizeof(spec), "crypt:xts-aes-256:%s:file:%s;create=1M", tu_path("same.bin"),
		 tu_path("never.img"));
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "identical"));
	assert_int_equal(stat(tu_path("never.img"), &st), -1);
}

/* ---- buffers ------------------------------------------------------------------------- */

/* A write never changes the caller's buffer, in one chunk or several, with
 * contiguous or split buffers. */
static void test_crypt_write_leaves_buffer(void **state UNUSED)
{
	const size_t len = (3u << 20) + 3 * 512;     /* several staging chunks */
	static const size_t shape[] = { 700, 100, 4096, 3 };
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t *pt = malloc(len), *copy = malloc(len), *back = malloc(len);
	struct iovec iov[4096];
	struct disk *d;
	int cnt;

	key_random(key, 9);
	d = crypt_over(ram(8 << 20, 512), key);
	fill_random(pt, len, 99);
	memcpy(copy, pt, len);
	assert_int_equal(disk_sync_write(d, 7, pt, len, 0), DISK_OK);
	assert_memory_equal(pt, copy, len);
	assert_int_equal(disk_sync_read(d, 7, back, len), DISK_OK);
	assert_memory_equal(back, copy, len);
	cnt = tu_split_iov_sizes(pt, 256 * 1024, shape, 4, iov, ARRAY_SIZE(iov));
	assert_int_equal(rw_iov(d, DISK_OP_WRITE, 9000, iov, cnt), DISK_OK);
	assert_memory_equal(pt, copy, 256 * 1024);
	disk_unref(d);
	free(pt);
	free(copy);
	free(back);
}

/* A write of several chunks that runs past the end fails and changes
 * nothing; zero-length requests are judged by their LBA. */
static void test_crypt_write_past_end_changes_nothing(void **state UNUSED)
{
	const size_t len = 2u << 20;
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t *buf = malloc(len);
	struct disk *d;
	uint64_t count;

	key_random(key, 10);
	d = crypt_over(ram(3 << 20, 512), key);
	count = disk_sector_count(d);
	memset(buf, 0x77, len);
	assert_int_equal(disk_sync_write(d, count - 2048, buf, len, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, count - 2048, 4096, 0), DISK_ILLEGAL_BLOCK);
	/* The RAM disk below still holds nothing at all. */
	assert_int_equal(disk_sync_read(disk_lower(d), 0, buf, len), DISK_OK);
	assert_true(tu_is_zero(buf, len));
	assert_int_equal(disk_sync_read(disk_lower(d), count - 2048, buf, 2048 * 512), DISK_OK);
	assert_true(tu_is_zero(buf, 2048 * 512));
	assert_int_equal(disk_sync_write(d, count, buf, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_write(d, count + 1, buf, 0, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, count, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, count + 1, 0, 0), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
	free(buf);
}

/* ---- forwarding (§5.4) --------------------------------------------------------------------- */

static struct disk *crypt_over_mock(struct mockdisk *m, enum disk_unmap_behavior ub, uint32_t caps)
{
	struct mockdisk_opts o = { .sectors = 64, .sector_size = 512, .unmap = ub, .fua = true,
				   .has_disk_id = true, .caps = caps };
	uint8_t key[CRYPT_KEY_BYTES];

	o.disk_id[0] = 0xd1;
	o.disk_id[15] = 0x5c;
	key_random(key, 77);
	return crypt_over(mockdisk_new(m, &o), key);
}

static void test_crypt_metadata(void **state UNUSED)
{
	static const struct {
		enum disk_unmap_behavior in, out;
	} fold[] = {
		{ DISK_UNMAP_ZEROES, DISK_UNMAP_UNSPECIFIED },
		{ DISK_UNMAP_UNSPECIFIED, DISK_UNMAP_UNSPECIFIED },
		{ DISK_UNMAP_IGNORED, DISK_UNMAP_IGNORED },
	};

	for (unsigned i = 0; i < ARRAY_SIZE(fold); i++) {
		struct mockdisk m = { 0 };
		struct disk *d = crypt_over_mock(&m, fold[i].in,
						 DISK_CAP_FAST_ZERO | DISK_CAP_BLOCK_STATUS |
						 DISK_CAP_EJECT | DISK_CAP_PR | DISK_CAP_RESIZE);
		const struct disk_info *info = disk_get_info(d);

		assert_string_equal(info->type, "crypt");
		assert_int_equal(info->unmap_behavior, fold[i].out);
		assert_int_equal(info->sector_size, 512);
		assert_true(info->fua_respected);
		assert_true(info->has_disk_id);
		assert_int_equal(info->disk_id[0], 0xd1);
		assert_int_equal(info->disk_id[15], 0x5c);
		assert_int_equal(info->caps & (DISK_CAP_FAST_ZERO | DISK_CAP_BLOCK_STATUS |
					       DISK_CAP_EJECT), 0);
		assert_int_equal(info->caps & (DISK_CAP_PR | DISK_CAP_RESIZE),
				 DISK_CAP_PR | DISK_CAP_RESIZE);
		assert_int_equal(disk_sector_count(d), 64);
		disk_unref(d);
		assert_int_equal(m.closes, 1);
		mockdisk_release(&m);
	}
}

static void test_crypt_forwarding(void **state UNUSED)
{
	struct mockdisk m = { 0 };
	struct disk *d = crypt_over_mock(&m, DISK_UNMAP_ZEROES, 0);
	struct disk_io io = { .op = DISK_OP_PR_CAPS };
	uint8_t pt[2048], back[2048];

	m.unmap_zeroes = true;
	tu_fill(pt, sizeof(pt), 5, 0);
	/* FUA reaches the inner disk with the write. */
	assert_int_equal(disk_sync_write(d, 4, pt, sizeof(pt), DISK_IO_FUA), DISK_OK);
	assert_int_equal(m.writes, 1);
	assert_int_equal(m.fua_writes, 1);
	/* Flush and PR go through. */
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(m.flushes, 1);
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, DISK_PR_CAP_WE);
	assert_int_equal(m.prs, 1);
	m.pr_status = DISK_RESERVATION_CONFLICT;
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_PR_REGISTER;
	io.u.pr.new_key = 1;
	assert_int_equal(disk_sync_io(d, &io), DISK_RESERVATION_CONFLICT);
	assert_int_equal(m.prs, 2);
	/* Eject stops here. */
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_EJECT;
	assert_int_equal(disk_sync_io(d, &io), DISK_UNSUPPORTED);
	/* Unmap is forwarded raw: the inner disk zeroes the ciphertext, which
	 * then decrypts to noise (hence UNSPECIFIED). */
	assert_int_equal(disk_sync_unmap(d, 4, 2, 0), DISK_OK);
	assert_int_equal(m.unmaps, 1);
	assert_true(tu_is_zero(m.data + 4 * 512, 1024));
	assert_int_equal(disk_sync_read(d, 4, back, sizeof(back)), DISK_OK);
	assert_false(tu_is_zero(back, 512));
	assert_false(tu_is_zero(back + 512, 512));
	assert_memory_equal(back + 1024, pt + 1024, 1024);
	disk_unref(d);
	mockdisk_release(&m);
}

/* Write-zeroes stores encrypted zeroes: it reads back as zeroes through
 * the crypt disk and never becomes an unmap or a write-zeroes below. */
static void test_crypt_write_zeroes_encrypts(void **state UNUSED)
{
	struct mockdisk m = { 0 };
	struct disk *d = crypt_over_mock(&m, DISK_UNMAP_ZEROES, 0);
	uint8_t pt[64 * 512], back[64 * 512];

	m.unmap_zeroes = true;
	tu_fill(pt, sizeof(pt), 6, 0);
	assert_int_equal(disk_sync_write(d, 0, pt, sizeof(pt), 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 8, 16, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 30, 2, DISK_IO_NO_UNMAP | DISK_IO_FUA), DISK_OK);
	assert_int_equal(m.unmaps, 0);
	assert_int_equal(m.fua_writes, 1);
	for (unsigned s = 8; s < 24; s++)
		assert_false(tu_is_zero(m.data + s * 512, 512));
	assert_int_equal(disk_sync_read(d, 0, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, pt, 8 * 512);
	assert_true(tu_is_zero(back + 8 * 512, 16 * 512));
	assert_memory_equal(back + 24 * 512, pt + 24 * 512, 6 * 512);
	assert_true(tu_is_zero(back + 30 * 512, 2 * 512));
	assert_memory_equal(back + 32 * 512, pt + 32 * 512, 32 * 512);
	/* Not fast, so FAST_ZERO is refused, and nothing changes. */
	assert_int_equal(disk_sync_write_zeroes(d, 40, 4, DISK_IO_FAST_ZERO), DISK_UNSUPPORTED);
	assert_int_equal(disk_sync_read(d, 40, back, 4 * 512), DISK_OK);
	assert_memory_equal(back, pt + 40 * 512, 4 * 512);
	disk_unref(d);
	mockdisk_release(&m);
}

/* Over a file, whose own write-zeroes would punch holes (zero ciphertext),
 * the crypt disk still writes encrypted zeroes, over several chunks. */
static void test_crypt_write_zeroes_over_file(void **state UNUSED)
{
	struct filedisk_opts fo = { .create = true, .create_size = 4 << 20 };
	const size_t len = 4u << 20;
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t *buf = malloc(len), *raw = malloc(len), *want = malloc(len), *zero = calloc(1, len);
	struct disk *f, *d;
	FILE *fp;

	if (filedisk_open(tu_path("wz.img"), &fo, &f, err, sizeof(err)) != 0)
		fail_msg("filedisk_open: %s", err);
	key_random(key, 12);
	d = crypt_over(f, key);
	memset(buf, 0xab, len);
	assert_int_equal(disk_sync_write(d, 0, buf, len, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 0, len / 512, 0), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(disk_sync_read(d, 0, buf, len), DISK_OK);
	assert_true(tu_is_zero(buf, len));
	/* The file holds the oracle's encryption of zeroes. */
	fp = fopen(tu_path("wz.img"), "rb");
	assert_non_null(fp);
	assert_int_equal(fread(raw, 1, len, fp), len);
	fclose(fp);
	oracle_sectors(key, 512, 0, zero, want, len / 512);
	assert_memory_equal(raw, want, len);
	disk_unref(d);
	free(buf);
	free(raw);
	free(want);
	free(zero);
}

/* Block status reports data everywhere (a hole below is noise, not zero);
 * CACHE goes to the inner disk; both are range-checked. */
static void test_crypt_block_status_and_cache(void **state UNUSED)
{
	uint8_t key[CRYPT_KEY_BYTES];
	struct disk_extent ext[4];
	struct disk_io io = { .op = DISK_OP_CACHE };
	struct disk *d;
	uint32_t nr = 0;

	key_random(key, 13);
	d = crypt_over(ram(1 << 20, 512), key);
	/* The RAM disk below is all hole and zero. */
	assert_int_equal(disk_sync_block_status(disk_lower(d), 0, 2048, ext, 4, &nr), DISK_OK);
	assert_true(ext[0].flags & DISK_EXTENT_ZERO);
	assert_int_equal(disk_sync_block_status(d, 0, 2048, ext, 4, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(ext[0].count, 2048);
	assert_int_equal(ext[0].flags, 0);
	assert_int_equal(disk_sync_block_status(d, 2000, 49, ext, 4, &nr), DISK_ILLEGAL_BLOCK);
	io.sector = 0;
	io.count = 2048;
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_CACHE;
	io.sector = 2048;
	io.count = 1;
	assert_int_equal(disk_sync_io(d, &io), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
}

/* ---- concurrency and lifetime ------------------------------------------------------------ */

struct worker {
	struct disk *d;
	uint64_t first;       /* first LBA of this worker's region */
	unsigned id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *pt = malloc(32768), *back = malloc(32768);

	tu_reactor();
	for (unsigned round = 0; round < 50; round++) {
		uint64_t lba = w->first + (round % 8) * 64;

		tu_fill(pt, 32768, w->id * 1000 + round, lba * 512);
		if (disk_sync_write(w->d, lba, pt, 32768, 0) != DISK_OK ||
		    disk_sync_read(w->d, lba, back, 32768) != DISK_OK ||
		    memcmp(pt, back, 32768) != 0)
			w->failures++;
	}
	free(pt);
	free(back);
	/* The reactor (and its context cache) goes before the disk. */
	tu_reactor_done();
	return NULL;
}

/* Several reactors share one crypt disk; the disk outlives them. */
static void test_crypt_threads(void **state UNUSED)
{
	enum { NW = 4 };
	uint8_t key[CRYPT_KEY_BYTES];
	struct worker w[NW];
	pthread_t t[NW];
	struct disk *d;

	key_random(key, 14);
	d = crypt_over(ram(4 << 20, 512), key);
	for (unsigned i = 0; i < NW; i++) {
		w[i] = (struct worker){ .d = d, .first = i * 1024, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < NW; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	/* And the main reactor still works with it. */
	worker_main(&(struct worker){ .d = d, .first = 3000, .id = 9 });
	tu_reactor();
	disk_unref(d);
}

/* Many crypt disks with different keys on one reactor (more than the
 * per-reactor cache has slots): each keeps its own key. */
static void test_crypt_many_disks_one_reactor(void **state UNUSED)
{
	enum { N = 19 };
	struct disk *mem = ram(1 << 20, 512), *d[N];
	uint8_t key[CRYPT_KEY_BYTES], pt[512], back[512], raw[N][512];

	memset(pt, 0x3c, sizeof(pt));
	for (unsigned i = 0; i < N; i++) {
		key_random(key, 100 + i);
		d[i] = crypt_over(disk_ref(mem), key);
	}
	for (unsigned round = 0; round < 3; round++)
		for (unsigned i = 0; i < N; i++) {
			assert_int_equal(disk_sync_write(d[i], i, pt, 512, 0), DISK_OK);
			assert_int_equal(disk_sync_read(d[i], i, back, 512), DISK_OK);
			assert_memory_equal(back, pt, 512);
		}
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(disk_sync_read(mem, i, raw[i], 512), DISK_OK);
		key_random(key, 100 + i);
		oracle_xts(key, i, pt, back, 512);
		assert_memory_equal(raw[i], back, 512);
	}
	/* Close some, open new ones: the new never see the old contexts. */
	for (unsigned i = 0; i < N; i += 2)
		disk_unref(d[i]);
	for (unsigned i = 0; i < N; i += 2) {
		key_random(key, 200 + i);
		d[i] = crypt_over(disk_ref(mem), key);
		assert_int_equal(disk_sync_write(d[i], i, pt, 512, 0), DISK_OK);
		assert_int_equal(disk_sync_read(mem, i, raw[i], 512), DISK_OK);
		oracle_xts(key, i, pt, back, 512);
		assert_memory_equal(raw[i], back, 512);
	}
	for (unsigned i = 0; i < N; i++)
		disk_unref(d[i]);
	disk_unref(mem);
}

/* ---- spec, describe, contract --------------------------------------------------------------- */

static void test_crypt_spec_and_describe(void **state UNUSED)
{
	uint8_t key[CRYPT_KEY_BYTES];
	struct tu_described cap;
	char spec[1024];
	uint8_t pt[4096], back[4096];
	struct disk *d;

	key_random(key, 15);
	write_file(tu_path("good.bin"), key, sizeof(key));
	snprintf(spec, sizeof(spec), "crypt:xts-aes-256:%s:mem:1M", tu_path("good.bin"));
	if (spec_open_str(spec, false, NULL, &d, err, sizeof(err)) != 0)
		fail_msg("spec_open_str: %s", err);
	assert_string_equal(disk_get_info(d)->type, "crypt");
	tu_fill(pt, sizeof(pt), 8, 0);
	assert_int_equal(disk_sync_write(d, 1, pt, sizeof(pt), 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 1, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, pt, sizeof(pt));
	tu_describe(d, &cap);
	assert_non_null(strstr(cap.text, "cipher=xts-aes-256\n"));
	assert_non_null(strstr(cap.text, "key-file="));
	assert_non_null(strstr(cap.text, "good.bin"));
	assert_non_null(strstr(cap.text, "data-unit=512"));
	/* No key byte pattern in the description. */
	for (unsigned i = 0; i + 4 <= sizeof(key); i++) {
		char needle[9];

		snprintf(needle, sizeof(needle), "%02x%02x%02x%02x", key[i], key[i + 1], key[i + 2],
			 key[i + 3]);
		assert_null(strstr(cap.text, needle));
		assert_null(memmem(cap.text, strlen(cap.text), key + i, 4));
	}
	disk_unref(d);
	/* Read-only flows to the inner disk. */
	if (spec_open_str(spec, true, NULL, &d, err, sizeof(err)) != 0)
		fail_msg("spec_open_str: %s", err);
	assert_true(disk_get_info(d)->read_only);
	disk_unref(d);
}

static void test_crypt_contract(void **state UNUSED)
{
	static const uint32_t sizes[] = { 512, 4096 };
	uint8_t key[CRYPT_KEY_BYTES];

	key_halves(key, 0xab, 0xcd);
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct disk *d = crypt_over(ram(1 << 20, sizes[i]), key);

		assert_int_equal(disk_sector_size(d), sizes[i]);
		contract_disk(d);
		disk_unref(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crypt_ieee_vector),
		cmocka_unit_test(test_crypt_roundtrip_64k),
		cmocka_unit_test(test_crypt_oracle_512),
		cmocka_unit_test(test_crypt_oracle_4096),
		cmocka_unit_test(test_crypt_evp_path),
		cmocka_unit_test(test_crypt_wrong_key_reads_garbage),
		cmocka_unit_test(test_crypt_key_file_sizes),
		cmocka_unit_test(test_crypt_key_file_errors),
		cmocka_unit_test(test_crypt_write_leaves_buffer),
		cmocka_unit_test(test_crypt_write_past_end_changes_nothing),
		cmocka_unit_test(test_crypt_metadata),
		cmocka_unit_test(test_crypt_forwarding),
		cmocka_unit_test(test_crypt_write_zeroes_encrypts),
		cmocka_unit_test(test_crypt_write_zeroes_over_file),
		cmocka_unit_test(test_crypt_block_status_and_cache),
		cmocka_unit_test(test_crypt_threads),
		cmocka_unit_test(test_crypt_many_disks_one_reactor),
		cmocka_unit_test(test_crypt_spec_and_describe),
		cmocka_unit_test(test_crypt_contract),
		cmocka_unit_test(test_crypt_fused_taken),
		cmocka_unit_test(test_crypt_fused_vs_copy_512),
		cmocka_unit_test(test_crypt_fused_vs_copy_4096),
		cmocka_unit_test(test_crypt_fused_vs_copy_memdiff_512),
		cmocka_unit_test(test_crypt_fused_vs_copy_memdiff_4096),
		cmocka_unit_test(test_crypt_fused_image_reads_back),
		cmocka_unit_test(test_crypt_copy_path),
	};

	return cmocka_run_group_tests_name("crypt", tests, tu_reactor_setup, tu_reactor_teardown);
}
