/* SPDX-License-Identifier: MIT */
/*
 * xts-memfloor.c: how much of `openssl speed -evp aes-256-xts` a decryption
 * keeps when its input comes from a large buffer (a disk's pages in DRAM)
 * instead of one buffer that stays in L1, as `openssl speed` ciphers.
 * The same EVP calls per data unit either way (a new tweak, then one
 * update); only where the ciphertext comes from differs. Run by
 * bench-decorators.sh; not part of diskstack.
 *
 *   xts-memfloor UNIT_BYTES SPAN_MIB SECONDS
 *
 * Prints "l1 MB/s, span MB/s, ratio" (bytes per CPU second of the thread).
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double thread_cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Decrypts 64 KiB requests for @secs CPU seconds; from @src (@span bytes,
 * walked sequentially) when it is non-NULL, else in place in @dst's first
 * unit. Returns bytes per CPU second, or -1. */
static double run(EVP_CIPHER_CTX *c, const uint8_t *src, size_t span, uint8_t *dst, int unit,
		  double secs)
{
	uint8_t iv[16] = { 0 };
	uint64_t lba = 0, bytes = 0;
	size_t pos = 0;
	double t0 = thread_cpu(), t;
	int outl;

	do {
		for (int k = 0; k < 65536 / unit; k++, lba++) {
			const uint8_t *in = src ? src + pos : dst;
			uint8_t *out = src ? dst + (size_t)k * unit : dst;

			memcpy(iv, &lba, sizeof(lba));
			if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, -1) != 1 ||
			    EVP_CipherUpdate(c, out, &outl, in, unit) != 1)
				return -1;
			if (src && (pos += (size_t)unit) + (size_t)unit > span)
				pos = 0;
			bytes += (uint64_t)unit;
		}
		t = thread_cpu() - t0;
	} while (t < secs);
	return (double)bytes / t;
}

int main(int argc, char **argv)
{
	uint8_t key[64];
	EVP_CIPHER_CTX *c;
	uint8_t *src, *dst;
	size_t span;
	double l1, far;
	int unit;

	if (argc != 4 || (unit = atoi(argv[1])) < 16 || 65536 % unit ||
	    (span = (size_t)atol(argv[2]) << 20) < 65536) {
		fprintf(stderr, "usage: xts-memfloor UNIT_BYTES SPAN_MIB SECONDS\n");
		return 2;
	}
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	c = EVP_CIPHER_CTX_new();
	src = malloc(span);
	dst = aligned_alloc(4096, 65536);
	if (!c || !src || !dst || EVP_CipherInit_ex(c, EVP_aes_256_xts(), NULL, key, NULL, 0) != 1)
		return 1;
	memset(src, 0x5a, span);   /* touch it: no page faults while timing */
	memset(dst, 0, 65536);
	l1 = run(c, NULL, 0, dst, unit, atof(argv[3]));
	far = run(c, src, span, dst, unit, atof(argv[3]));
	if (l1 <= 0 || far <= 0)
		return 1;
	printf("%.0f %.0f %.3f\n", l1 / 1e6, far / 1e6, far / l1);
	EVP_CIPHER_CTX_free(c);
	free(src);
	free(dst);
	return 0;
}
