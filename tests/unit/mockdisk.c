/* SPDX-License-Identifier: MIT */
/*
 * mockdisk.c: a flat in-memory disk backend for tests (see mockdisk.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

static struct mockdisk *mock_of(struct disk *d) { return disk_priv(d); }

static uint64_t mock_sector_count(struct disk *d) { return mock_of(d)->sectors; }

static int mock_range(struct mockdisk *m, uint64_t s, uint64_t n)
{
	return s + n > m->sectors ? DISK_ILLEGAL_BLOCK : DISK_OK;
}

static int mock_read(struct disk *d, struct disk_io *io)
{
	struct mockdisk *m = mock_of(d);

	m->reads++;
	if (mock_range(m, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	iov_from_buf(io->iov, io->iovcnt, 0, m->data + io->sector * m->ss, io->count * m->ss);
	return DISK_OK;
}

static int mock_write(struct disk *d, struct disk_io *io)
{
	struct mockdisk *m = mock_of(d);

	m->writes++;
	if (io->flags & DISK_IO_ADOPT)
		m->adopt_writes++;
	if (io->flags & DISK_IO_FUA)
		m->fua_writes++;
	if (mock_range(m, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	iov_to_buf(io->iov, io->iovcnt, 0, m->data + io->sector * m->ss, io->count * m->ss);
	return DISK_OK;
}

static int mock_flush(struct disk *d, struct disk_io *io)
{
	mock_of(d)->flushes++;
	return DISK_OK;
}

static int mock_unmap(struct disk *d, struct disk_io *io)
{
	struct mockdisk *m = mock_of(d);

	m->unmaps++;
	if (mock_range(m, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	if (m->unmap_zeroes)
		memset(m->data + io->sector * m->ss, 0, io->count * m->ss);
	return DISK_OK;
}

static int mock_pr(struct disk *d, struct disk_io *io)
{
	struct mockdisk *m = mock_of(d);

	m->prs++;
	if (io->op == DISK_OP_PR_CAPS)
		io->u.pr.caps = DISK_PR_CAP_WE;
	return m->pr_status;
}

static void mock_close(struct disk *d)
{
	mock_of(d)->closes++;
}

static const struct disk_ops mock_ops = {
	.version = DISK_OPS_VERSION,
	.sector_count = mock_sector_count,
	.read = mock_read,
	.write = mock_write,
	.flush = mock_flush,
	.unmap = mock_unmap,
	.pr = mock_pr,
	.close = mock_close,
};

struct disk *mockdisk_new(struct mockdisk *m, const struct mockdisk_opts *o)
{
	uint32_t ss = o->sector_size ? o->sector_size : 512;
	struct disk_info info = {
		.type = "mock", .sector_size = ss, .physical_sector_size = ss,
		.fua_respected = o->fua, .unmap_behavior = o->unmap, .read_only = o->read_only,
		.has_disk_id = o->has_disk_id, .caps = o->caps | DISK_CAP_COHERENT,
		.origin = o->origin,
	};
	struct disk *d;

	memcpy(info.disk_id, o->disk_id, sizeof(info.disk_id));
	memset(m, 0, sizeof(*m));
	m->data = calloc(o->sectors, ss);
	assert_non_null(m->data);
	m->sectors = o->sectors;
	m->ss = ss;
	m->unmap_zeroes = o->unmap == DISK_UNMAP_ZEROES;
	assert_int_equal(disk_new(&mock_ops, &info, m, NULL, &d), 0);
	return d;
}

void mockdisk_release(struct mockdisk *m)
{
	free(m->data);
	m->data = NULL;
}
