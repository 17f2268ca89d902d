/* SPDX-License-Identifier: MIT */
/*
 * fuzz-spec.c: libFuzzer target for the disk-spec parser (storage/spec.c).
 * Any byte string is a candidate spec: parsing must return 0 with a tree or
 * -EINVAL with a message, never crash, read out of bounds or leak. A parsed
 * tree's sizes are formatted back as a smoke test of spec_format_size.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "storage/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], sz[64];
	struct spec *s = NULL;
	char *text;
	int r;

	if (size > 4096)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	r = spec_parse(text, &s, err, sizeof(err));
	if (r == 0) {
		if (!s)
			abort();
		spec_format_size(s->size, sz, sizeof(sz));
		spec_free(s);
	} else if (r != -EINVAL || !err[0]) {
		abort();        /* every refusal is -EINVAL with a message */
	}
	free(text);
	return 0;
}
