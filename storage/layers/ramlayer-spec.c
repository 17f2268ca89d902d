/* SPDX-License-Identifier: MIT */
/*
 * ramlayer-spec.c: the spec kinds of the RAM layer (kind.h): `mem:<size>`,
 * a RAM disk, and `memdiff:<spec>`, a RAM diff layer over another spec
 * (docs/layer-ram.md).
 */
#include "config.h"

#include "common/compiler.h"
#include "storage/kind.h"

static int ramlayer_spec_open_mem(const struct spec *s, bool read_only UNUSED,
				  const struct spec_ctx *ctx UNUSED, struct layer **out,
				  bool *read_cache UNUSED, char *err, size_t errlen)
{
	return ramlayer_new(s->size, 512, out, err, errlen);
}

static int ramlayer_spec_open_memdiff(const struct spec *s UNUSED, bool read_only UNUSED,
				      const struct spec_ctx *ctx UNUSED, struct layer **out,
				      bool *read_cache UNUSED, char *err, size_t errlen)
{
	/* Lazily sized: size and sector size come from the layer below. */
	return ramlayer_new(0, 0, out, err, errlen);
}

const struct spec_kind ramlayer_kind_mem = {
	.name = "mem",
	.usage = "mem:<size>",
	.summary = "RAM disk of <size> bytes, 512-byte sectors; contents are lost at exit",
	.open_layer = ramlayer_spec_open_mem,
	.args = { { .type = SPEC_ARG_SIZE, .name = "size", .field = SPEC_FIELD(size) } },
	.nargs = 1,
	.writes = SPEC_WRITES_LOST,
};

const struct spec_kind ramlayer_kind_memdiff = {
	.name = "memdiff",
	.usage = "memdiff:<spec>",
	.summary = "RAM diff layer over <spec> (opened read-only); writes are lost at exit",
	.open_layer = ramlayer_spec_open_memdiff,
	.inner_forced_ro = true,
	.tail = SPEC_TAIL_INNER,
	.writes = SPEC_WRITES_LOST,     /* they stay in RAM, never reach <spec> */
};
