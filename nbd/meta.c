/* SPDX-License-Identifier: MIT */
/*
 * meta.c: metadata contexts, query matching and extent encoding (meta.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "nbd/meta.h"
#include "nbd/proto.h"

static const struct {
	const char *ns;       /* namespace, without the colon */
	const char *leaf;
} nbdsrv_meta_defs[NBDSRV_META_COUNT] = {
	{ "base", "allocation" },
	{ "diskstack", "layer" },
};

const char *nbdsrv_meta_name(unsigned index)
{
	static const char *const names[NBDSRV_META_COUNT] = {
		"base:allocation",
		"diskstack:layer",
	};
	return index < NBDSRV_META_COUNT ? names[index] : "";
}

int nbdsrv_meta_match(const char *q, size_t len, bool list, uint32_t *mask)
{
	const char *colon = memchr(q, ':', len);
	size_t nslen, leaflen;
	const char *leaf;

	*mask = 0;
	if (!colon || colon == q)
		return -EINVAL;
	nslen = (size_t)(colon - q);
	leaf = colon + 1;
	leaflen = len - nslen - 1;
	for (unsigned i = 0; i < NBDSRV_META_COUNT; i++) {
		if (strlen(nbdsrv_meta_defs[i].ns) != nslen ||
		    memcmp(nbdsrv_meta_defs[i].ns, q, nslen) != 0)
			continue;
		if (leaflen == 0) {
			/* "ns:" lists the namespace, selects nothing. */
			if (list)
				*mask |= 1u << i;
			continue;
		}
		if (strlen(nbdsrv_meta_defs[i].leaf) == leaflen &&
		    memcmp(nbdsrv_meta_defs[i].leaf, leaf, leaflen) == 0)
			*mask |= 1u << i;
	}
	return 0;
}

uint32_t nbdsrv_meta_value(unsigned index, const struct disk_extent *e)
{
	uint32_t v = 0;

	switch (index) {
	case 0:
		if (e->flags & DISK_EXTENT_HOLE)
			v |= NBDW_STATE_HOLE;
		if (e->flags & DISK_EXTENT_ZERO)
			v |= NBDW_STATE_ZERO;
		return v;
	case 1:
		if (e->layer >= 0)
			return (uint32_t)e->layer + 1;
		return (e->flags & DISK_EXTENT_HOLE) ? 0 : 1;
	default:
		return 0;
	}
}

uint32_t nbdsrv_meta_encode(const struct disk_extent *ext, uint32_t n, uint32_t shift,
			    unsigned index, uint32_t max_desc_bytes, bool one,
			    uint32_t one_limit_bytes, uint8_t *out)
{
	uint32_t nd = 0;
	uint64_t cur_len = 0;
	uint32_t cur_val = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t bytes = ext[i].count << shift;
		uint32_t v = nbdsrv_meta_value(index, &ext[i]);

		if (bytes == 0)
			continue;
		if (cur_len && v == cur_val) {
			cur_len += bytes;
			continue;
		}
		if (cur_len) {
			/* Emit the finished run; a run longer than a
			 * descriptor holds ends the reply (the client asks
			 * again from where it stopped). */
			bool truncated = cur_len > max_desc_bytes;

			ds_put_be32(out + 8 * nd, (uint32_t)MIN(cur_len, (uint64_t)max_desc_bytes));
			ds_put_be32(out + 8 * nd + 4, cur_val);
			nd++;
			if (one || truncated)
				goto done;
		}
		cur_len = bytes;
		cur_val = v;
	}
	if (cur_len) {
		ds_put_be32(out + 8 * nd, (uint32_t)MIN(cur_len, (uint64_t)max_desc_bytes));
		ds_put_be32(out + 8 * nd + 4, cur_val);
		nd++;
	}
done:
	if (one && nd > 0 && ds_get_be32(out) > one_limit_bytes)
		ds_put_be32(out, one_limit_bytes);
	return nd;
}
