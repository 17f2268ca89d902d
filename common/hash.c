/* SPDX-License-Identifier: MIT */
/* hash.c: see hash.h. */
#include "config.h"

#include <string.h>

#include <openssl/evp.h>

#include "common/hash.h"

void ds_hash16(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[16])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) || !EVP_DigestUpdate(c, a, alen) ||
	    !EVP_DigestUpdate(c, b, blen) || !EVP_DigestFinal_ex(c, md, &mdlen) || mdlen < 16) {
		uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;

		for (size_t i = 0; i < alen + blen; i++) {
			uint8_t ch = i < alen ? ((const uint8_t *)a)[i] : ((const uint8_t *)b)[i - alen];

			h1 = (h1 ^ ch) * 0x100000001b3ull;
			h2 = (h2 ^ ch) * 0x100000001b3ull + 1;
		}
		memcpy(md, &h1, 8);
		memcpy(md + 8, &h2, 8);
	}
	EVP_MD_CTX_free(c);
	memcpy(out, md, 16);
}
