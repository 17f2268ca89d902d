/* SPDX-License-Identifier: MIT */
/*
 * test-vhost-scsi.c: the virtio-scsi back-end (vhost/scsi.c on
 * vhost/server.c and the SCSI core) driven through its rings by the
 * host-side test front-end (vhostfront.h) as QEMU 7.2 and a Linux guest
 * drive it (docs/vhost.md): commands with data both ways, sense and
 * residuals, LUN addressing, task management, asynchronous notification,
 * events, and malformed requests.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/scsi.h"
#include "storage/decorators/delay.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/proto.h"
#include "vhost/scsi.h"
#include "vhost/vhost.h"

#define BIT(n) (1ull << (n))
#define CTL VIRTIO_SCSI_VQ_CONTROL
#define EVQ VIRTIO_SCSI_VQ_EVENT
#define REQ VIRTIO_SCSI_VQ_REQUEST
#define MiB (1u << 20)

/* The fixture: LUN 0 a 16 MiB RAM disk, LUN 1 a DVD holding a 4 MiB
 * medium, one request queue. */
struct vst {
	struct vt vt;
	struct scsi_target *t;
	struct vhostscsi *dev;
	struct disk *disk0, *medium;
	uint64_t ev_gpa[1024];          /* event buffers by head */
};

static void vst_setup(struct vst *s, unsigned request_queues, struct disk *disk0)
{
	struct scsi_lu_opts dvd = { .type = SCSI_LU_DVD };
	char err[256];

	memset(s, 0, sizeof(*s));
	(void)tu_reactor();
	s->t = st_target(NULL);
	if (disk0)
		s->disk0 = disk_ref(disk0);
	else
		assert_int_equal(ramdisk_new(16 * MiB, 512, false, &s->disk0, err, sizeof(err)), 0);
	st_add_disk(s->t, 0, s->disk0, NULL);
	assert_int_equal(ramdisk_new(4 * MiB, 512, false, &s->medium, err, sizeof(err)), 0);
	st_add_disk(s->t, 1, s->medium, &dvd);
	assert_int_equal(vhostscsi_new(s->t, &(struct vhostscsi_opts){ .request_queues =
									   request_queues },
				       &s->dev), 0);
	vt_setup(&s->vt, &(struct vt_opts){ .ops = &vhostscsi_ops, .dev = s->dev,
					    .queues = vhostscsi_queues(s->dev) });
}

static void vst_teardown(struct vst *s)
{
	vt_teardown(&s->vt);
	vhostscsi_free(s->dev);
	scsi_target_free(s->t);
	disk_unref(s->disk0);
	disk_unref(s->medium);
}

/* The virtio LUN of target @target, LUN @lun, as Linux sends it (flat
 * space addressing even below 256), or with peripheral addressing. */
static void vlun_as(uint8_t out[8], unsigned target, unsigned lun, bool peripheral)
{
	memset(out, 0, 8);
	out[0] = 1;
	out[1] = (uint8_t)target;
	out[2] = (uint8_t)((peripheral ? 0 : 0x40) | (lun >> 8));
	out[3] = (uint8_t)lun;
}

static void vlun(uint8_t out[8], unsigned target, unsigned lun)
{
	vlun_as(out, target, lun, false);
}

struct sresp {
	uint8_t response, status;
	uint32_t sense_len, resid, used;
	uint8_t key, asc, ascq;
	uint8_t sense[VIRTIO_SCSI_SENSE_SIZE];
};

struct scmd {
	unsigned q;
	unsigned target, lun;
	uint64_t tag;
	const uint8_t *cdb;
	size_t cdb_len;
	const void *dout;               /* data-out bytes (readable) */
	size_t dout_len;
	size_t din_len;                 /* data-in room (writable), filled with 0xa5 */
	size_t hdr_len;                 /* 0: the whole 51-byte header */
	size_t resp_len;                /* 0: the whole 108-byte response */
	size_t split;                   /* split the header in two buffers at this byte */
	bool din_readable;              /* the "data-in" room marked device-readable */
	bool dout_writable;             /* the data-out marked device-writable */
	bool peripheral;                /* LUN in peripheral addressing */
};

/* Builds and publishes the command; returns the head. *@din_gpa and
 * *@resp_gpa say where the answer goes. */
static int scmd_submit(struct vst *s, const struct scmd *c, uint64_t *resp_gpa, uint64_t *din_gpa)
{
	struct vfront *f = s->vt.f;
	size_t hl = c->hdr_len ? c->hdr_len : VIRTIO_SCSI_CMD_REQ_BYTES;
	size_t rl = c->resp_len ? c->resp_len : VIRTIO_SCSI_CMD_RESP_BYTES;
	uint64_t hdr = vfront_alloc(f, VIRTIO_SCSI_CMD_REQ_BYTES), resp = vfront_alloc(f, rl);
	uint64_t dout = 0, din = 0;
	struct vfront_buf bufs[6];
	unsigned n = 0;
	uint8_t *h;

	assert_true(hdr && resp);
	h = vfront_ptr(f, hdr);
	memset(h, 0, VIRTIO_SCSI_CMD_REQ_BYTES);
	vlun_as(h, c->target, c->lun, c->peripheral);
	ds_put_le64(h + 8, c->tag);
	memcpy(h + 19, c->cdb, c->cdb_len);
	memset(vfront_ptr(f, resp), 0xee, rl);
	if (c->split && c->split < hl) {
		bufs[n++] = (struct vfront_buf){ hdr, (uint32_t)c->split, false };
		bufs[n++] = (struct vfront_buf){ hdr + c->split, (uint32_t)(hl - c->split), false };
	} else {
		bufs[n++] = (struct vfront_buf){ hdr, (uint32_t)hl, false };
	}
	if (c->dout_len) {
		assert_true((dout = vfront_alloc(f, c->dout_len)) != 0);
		memcpy(vfront_ptr(f, dout), c->dout, c->dout_len);
		if (!c->dout_writable)
			bufs[n++] = (struct vfront_buf){ dout, (uint32_t)c->dout_len, false };
	}
	if (c->din_len) {
		assert_true((din = vfront_alloc(f, c->din_len)) != 0);
		memset(vfront_ptr(f, din), 0xa5, c->din_len);
		if (c->din_readable)
			bufs[n++] = (struct vfront_buf){ din, (uint32_t)c->din_len, false };
	}
	bufs[n++] = (struct vfront_buf){ resp, (uint32_t)rl, true };
	if (c->dout_len && c->dout_writable)
		bufs[n++] = (struct vfront_buf){ dout, (uint32_t)c->dout_len, true };
	if (c->din_len && !c->din_readable)
		bufs[n++] = (struct vfront_buf){ din, (uint32_t)c->din_len, true };
	*resp_gpa = resp;
	*din_gpa = c->din_len ? din : dout;
	return vfront_add_chain(f, c->q, bufs, n, true);
}

static void sresp_parse(struct vst *s, uint64_t resp, uint32_t used, struct sresp *r)
{
	const uint8_t *p = vfront_ptr(s->vt.f, resp);

	memset(r, 0, sizeof(*r));
	r->used = used;
	r->sense_len = ds_get_le32(p);
	r->resid = ds_get_le32(p + 4);
	r->status = p[10];
	r->response = p[11];
	memcpy(r->sense, p + 12, sizeof(r->sense));
	scsi_sense_parse(r->sense, MIN(r->sense_len, (uint32_t)sizeof(r->sense)), &r->key, &r->asc,
			 &r->ascq);
}

/* Runs @c and waits; data-in is copied to @din (room c->din_len). */
static void scmd_run(struct vst *s, const struct scmd *c, void *din, struct sresp *r)
{
	uint64_t resp, dgpa;
	uint32_t used;
	uint16_t id;
	int head;

	if (s->vt.f && vfront_mem_bytes(s->vt.f) < 0x1000000 + 4 * MiB)
		fail_msg("guest memory too small");
	vfront_arena_reset(s->vt.f);
	head = scmd_submit(s, c, &resp, &dgpa);
	assert_true(head >= 0);
	assert_int_equal(vfront_wait_used(s->vt.f, c->q, &id, &used), 0);
	assert_int_equal(id, head);
	sresp_parse(s, resp, used, r);
	if (din && c->din_len)
		memcpy(din, vfront_ptr(s->vt.f, dgpa), c->din_len);
}

/* A command on target 0, queue REQ, that must come back with response OK. */
static uint8_t cmd(struct vst *s, unsigned lun, const uint8_t *cdb, size_t cdb_len, const void *dout,
		   size_t dout_len, void *din, size_t din_len, struct sresp *r)
{
	struct sresp tmp;
	struct scmd c = { .q = REQ, .lun = lun, .cdb = cdb, .cdb_len = cdb_len, .dout = dout,
			  .dout_len = dout_len, .din_len = din_len };

	if (!r)
		r = &tmp;
	scmd_run(s, &c, din, r);
	assert_int_equal(r->response, VIRTIO_SCSI_S_OK);
	return r->status;
}

static const uint8_t tur[6] = { 0x00 };

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* TEST UNIT READY until no unit attention is left (what Linux's scan does). */
static void clear_ua(struct vst *s, unsigned lun)
{
	struct sresp r;

	for (int i = 0; i < 8; i++) {
		if (cmd(s, lun, tur, 6, NULL, 0, NULL, 0, &r) == SCSI_GOOD ||
		    r.key != SCSI_SK_UNIT_ATTENTION)
			return;
	}
	fail_msg("LUN %u keeps reporting unit attentions", lun);
}

static void rw10(uint8_t cdb[10], uint8_t op, uint32_t lba, uint16_t blocks)
{
	memset(cdb, 0, 10);
	cdb[0] = op;
	ds_put_be32(cdb + 2, lba);
	ds_put_be16(cdb + 7, blocks);
}

/* ---- control queue helpers ------------------------------------------------ */

/* Publishes a TMF; returns the head, its response byte's address in *@resp. */
static int tmf_submit(struct vst *s, uint32_t subtype, unsigned target, unsigned lun, uint64_t tag,
		      uint64_t *resp)
{
	struct vfront *f = s->vt.f;
	uint64_t req = vfront_alloc(f, VIRTIO_SCSI_TMF_REQ_BYTES);
	uint8_t *p = vfront_ptr(f, req);
	struct vfront_buf bufs[2];

	*resp = vfront_alloc(f, 1);
	memset(p, 0, VIRTIO_SCSI_TMF_REQ_BYTES);
	ds_put_le32(p, VIRTIO_SCSI_T_TMF);
	ds_put_le32(p + 4, subtype);
	vlun(p + 8, target, lun);
	ds_put_le64(p + 16, tag);
	*(uint8_t *)vfront_ptr(f, *resp) = 0xee;
	bufs[0] = (struct vfront_buf){ req, VIRTIO_SCSI_TMF_REQ_BYTES, false };
	bufs[1] = (struct vfront_buf){ *resp, 1, true };
	return vfront_add_chain(f, CTL, bufs, 2, false);
}

static uint8_t tmf(struct vst *s, uint32_t subtype, unsigned target, unsigned lun, uint64_t tag)
{
	uint64_t resp;
	uint16_t id;
	int head = tmf_submit(s, subtype, target, lun, tag, &resp);

	assert_true(head >= 0);
	assert_int_equal(vfront_wait_used(s->vt.f, CTL, &id, NULL), 0);
	assert_int_equal(id, head);
	return *(uint8_t *)vfront_ptr(s->vt.f, resp);
}

/* AN query or subscribe; the response code in *@response. */
static uint32_t an(struct vst *s, uint32_t type, unsigned lun, uint32_t want, uint8_t *response)
{
	struct vfront *f = s->vt.f;
	uint64_t req = vfront_alloc(f, VIRTIO_SCSI_AN_REQ_BYTES), resp = vfront_alloc(f, 8);
	uint8_t *p = vfront_ptr(f, req), *rp = vfront_ptr(f, resp);
	struct vfront_buf bufs[2] = { { req, VIRTIO_SCSI_AN_REQ_BYTES, false },
				      { resp, VIRTIO_SCSI_AN_RESP_BYTES, true } };
	uint32_t used;
	uint16_t id;
	int head;

	ds_put_le32(p, type);
	vlun(p + 4, 0, lun);
	ds_put_le32(p + 12, want);
	memset(rp, 0xee, 8);
	head = vfront_add_chain(f, CTL, bufs, 2, false);
	assert_true(head >= 0);
	assert_int_equal(vfront_wait_used(f, CTL, &id, &used), 0);
	assert_int_equal(id, head);
	assert_int_equal(used, VIRTIO_SCSI_AN_RESP_BYTES);
	*response = rp[4];
	return ds_get_le32(rp);
}

/* ---- event queue helpers ------------------------------------------------------ */

static void post_events(struct vst *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = vfront_alloc(s->vt.f, VIRTIO_SCSI_EVENT_BYTES);
		struct vfront_buf b = { gpa, VIRTIO_SCSI_EVENT_BYTES, true };
		int head;

		memset(vfront_ptr(s->vt.f, gpa), 0xee, VIRTIO_SCSI_EVENT_BYTES);
		head = vfront_add_chain(s->vt.f, EVQ, &b, 1, false);
		assert_true(head >= 0);
		s->ev_gpa[head] = gpa;
	}
}

struct sevent {
	uint32_t event, reason;
	uint8_t lun[8];
};

static void wait_event(struct vst *s, struct sevent *e)
{
	uint32_t used;
	uint16_t id;
	const uint8_t *p;

	assert_int_equal(vfront_wait_used(s->vt.f, EVQ, &id, &used), 0);
	assert_int_equal(used, VIRTIO_SCSI_EVENT_BYTES);
	p = vfront_ptr(s->vt.f, s->ev_gpa[id]);
	e->event = ds_get_le32(p);
	memcpy(e->lun, p + 4, 8);
	e->reason = ds_get_le32(p + 12);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_vhost_scsi_negotiation(void **state)
{
	struct vst s;
	uint64_t f;

	(void)state;
	vst_setup(&s, 2, NULL);
	f = vfront_features(s.vt.f);
	assert_true(f & BIT(VIRTIO_SCSI_F_HOTPLUG));
	assert_true(f & BIT(VIRTIO_SCSI_F_CHANGE));
	/* Not implemented, so never offered: bidirectional commands, T10
	 * PI, packed rings. */
	assert_false(f & (BIT(VIRTIO_SCSI_F_INOUT) | BIT(VIRTIO_SCSI_F_T10_PI) | BIT(34)));
	/* QEMU owns virtio-scsi's config space: CONFIG makes it warn. */
	assert_false(vfront_protocol_features(s.vt.f) & BIT(VHU_PROTO_CONFIG));
	assert_int_equal(vfront_queue_num(s.vt.f), 4);
	/* Both request queues run commands. */
	for (unsigned q = REQ; q < REQ + 2; q++) {
		struct scmd c = { .q = q, .cdb = tur, .cdb_len = 6 };
		struct sresp r;

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OK);
	}
	vst_teardown(&s);
}

static void test_vhost_scsi_inquiry_report_luns(void **state)
{
	static const uint8_t inquiry[6] = { 0x12, 0, 0, 0, 96, 0 };
	static const uint8_t report_luns[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
	uint8_t buf[4096];
	struct sresp r;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	/* INQUIRY: no unit attention, 96 bytes of 96 room. */
	assert_int_equal(cmd(&s, 0, inquiry, 6, NULL, 0, buf, 96, &r), SCSI_GOOD);
	assert_int_equal(buf[0], 0x00);         /* direct access */
	assert_int_equal(r.resid, 0);
	assert_int_equal(r.used, VIRTIO_SCSI_CMD_RESP_BYTES + 96);
	assert_int_equal(cmd(&s, 1, inquiry, 6, NULL, 0, buf, 96, NULL), SCSI_GOOD);
	assert_int_equal(buf[0], 0x05);         /* CD/DVD */
	assert_true(buf[1] & 0x80);             /* removable */
	/* An absent LUN on the target: peripheral qualifier 3. */
	assert_int_equal(cmd(&s, 7, inquiry, 6, NULL, 0, buf, 96, NULL), SCSI_GOOD);
	assert_int_equal(buf[0], 0x7f);
	/* REPORT LUNS into Linux's 4 KiB: two LUNs in peripheral format,
	 * the rest of the room a residual. */
	assert_int_equal(cmd(&s, 0, report_luns, 12, NULL, 0, buf, 4096, &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(buf), 16);
	assert_int_equal(ds_get_be64(buf + 8), 0);
	assert_int_equal(ds_get_be64(buf + 16), 1ull << 48);
	assert_int_equal(r.resid, 4096 - 24);
	/* Targets other than 0 do not exist (Linux probes 1..255). */
	{
		struct scmd c = { .q = REQ, .target = 1, .cdb = inquiry, .cdb_len = 6, .din_len = 36 };

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_BAD_TARGET);
	}
	/* The DVD addressed with peripheral addressing (01 00 00 01) too. */
	{
		struct scmd c = { .q = REQ, .lun = 1, .cdb = inquiry, .cdb_len = 6, .din_len = 96,
				  .peripheral = true };

		scmd_run(&s, &c, buf, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OK);
		assert_int_equal(buf[0], 0x05);
	}
	vst_teardown(&s);
}

static void test_vhost_scsi_read_write(void **state)
{
	static uint8_t w[256 << 10], rd[256 << 10];
	uint8_t cdb[10];
	struct sresp r;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	clear_ua(&s, 0);
	tu_fill(w, sizeof(w), 11, 0);
	rw10(cdb, 0x2A, 128, sizeof(w) / 512);
	assert_int_equal(cmd(&s, 0, cdb, 10, w, sizeof(w), NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.resid, 0);
	assert_int_equal(r.used, VIRTIO_SCSI_CMD_RESP_BYTES);
	/* The disk itself has the data. */
	assert_int_equal(disk_sync_read(s.disk0, 128, rd, sizeof(rd)), DISK_OK);
	assert_memory_equal(rd, w, sizeof(w));
	rw10(cdb, 0x28, 128, sizeof(w) / 512);
	memset(rd, 0, sizeof(rd));
	assert_int_equal(cmd(&s, 0, cdb, 10, NULL, 0, rd, sizeof(rd), &r), SCSI_GOOD);
	assert_memory_equal(rd, w, sizeof(w));
	assert_int_equal(r.used, VIRTIO_SCSI_CMD_RESP_BYTES + sizeof(w));
	/* The header split across descriptors anywhere, even inside the CDB. */
	for (size_t split = 1; split < VIRTIO_SCSI_CMD_REQ_BYTES; split += 7) {
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .din_len = 4096,
				  .split = split };

		rw10(cdb, 0x28, 128, 8);
		scmd_run(&s, &c, rd, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OK);
		assert_int_equal(r.status, SCSI_GOOD);
		assert_memory_equal(rd, w, 4096);
	}
	/* More room than the CDB moves: the rest is the residual (underflow). */
	rw10(cdb, 0x28, 128, 8);
	assert_int_equal(cmd(&s, 0, cdb, 10, NULL, 0, rd, 8192, &r), SCSI_GOOD);
	assert_int_equal(r.resid, 4096);
	assert_memory_equal(rd, w, 4096);
	/* Less room than the CDB moves: OVERRUN (virtio 1.2 §5.6.6.1). */
	{
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .din_len = 2048 };

		scmd_run(&s, &c, rd, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OVERRUN);
	}
	/* The DVD: 2048-byte blocks of the medium, read-only. */
	clear_ua(&s, 1);
	{
		static uint8_t iso[8192];

		tu_fill(iso, sizeof(iso), 5, 0);
		assert_int_equal(disk_sync_write(s.medium, 0, iso, sizeof(iso), 0), DISK_OK);
		rw10(cdb, 0x28, 1, 2);
		assert_int_equal(cmd(&s, 1, cdb, 10, NULL, 0, rd, 4096, NULL), SCSI_GOOD);
		assert_memory_equal(rd, iso + 2048, 4096);
		rw10(cdb, 0x2A, 1, 1);
		/* MMC has no WRITE(10) for a DVD-ROM drive. */
		assert_int_equal(cmd(&s, 1, cdb, 10, iso, 2048, NULL, 0, &r), SCSI_CHECK_CONDITION);
		assert_int_equal(r.key, SCSI_SK_ILLEGAL_REQUEST);
	}
	vst_teardown(&s);
}

static void test_vhost_scsi_sense(void **state)
{
	static const uint8_t bogus[6] = { 0xC5 };
	uint8_t cdb[10], rd[4096];
	struct sresp r;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	/* The nexus's first command hears of the power on (SAM-5 §5.14). */
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.sense_len, 18);
	assert_int_equal(r.sense[0], 0x70);
	assert_int_equal(r.key, SCSI_SK_UNIT_ATTENTION);
	assert_int_equal(r.asc, 0x29);
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.sense_len, 0);
	/* Beyond the capacity: LBA OUT OF RANGE, nothing transferred. */
	rw10(cdb, 0x28, 16 * MiB / 512, 8);
	assert_int_equal(cmd(&s, 0, cdb, 10, NULL, 0, rd, 4096, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.key, SCSI_SK_ILLEGAL_REQUEST);
	assert_int_equal(r.asc, 0x21);
	assert_int_equal(r.resid, 4096);
	assert_int_equal(r.used, VIRTIO_SCSI_CMD_RESP_BYTES);
	/* An opcode nobody knows. */
	assert_int_equal(cmd(&s, 0, bogus, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x20);
	/* A LUN that does not exist: LOGICAL UNIT NOT SUPPORTED. */
	assert_int_equal(cmd(&s, 9, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x25);
	/* The DVD with its medium taken out: NOT READY, MEDIUM NOT PRESENT. */
	clear_ua(&s, 1);
	assert_int_equal(scsi_lu_change_media(scsi_target_lu(s.t, 1), NULL, true), 0);
	rw10(cdb, 0x28, 0, 1);
	for (int i = 0; i < 4; i++)
		if (cmd(&s, 1, cdb, 10, NULL, 0, rd, 2048, &r) != SCSI_CHECK_CONDITION ||
		    r.key != SCSI_SK_UNIT_ATTENTION)
			break;
	assert_int_equal(r.key, SCSI_SK_NOT_READY);
	assert_int_equal(r.asc, 0x3A);
	vst_teardown(&s);
}

/* A READ(10) of LUN 0 held for a while by a delay disk. */
static int slow_read(struct vst *s, uint64_t tag, uint64_t *resp)
{
	static uint8_t cdb[10];
	struct scmd c = { .q = REQ, .tag = tag, .cdb = cdb, .cdb_len = 10, .din_len = 4096 };
	uint64_t d;

	rw10(cdb, 0x28, 0, 8);
	return scmd_submit(s, &c, resp, &d);
}

/* Asks with QUERY TASK (SET) until the command is in flight: the request
 * and control queues run on different threads. */
static void wait_in_flight(struct vst *s, uint32_t query, uint64_t tag)
{
	for (int i = 0; i < 1000; i++) {
		if (tmf(s, query, 0, 0, tag) == VIRTIO_SCSI_S_FUNCTION_SUCCEEDED)
			return;
		usleep(1000);
	}
	fail_msg("the command never showed up in flight");
}

static void test_vhost_scsi_tmf(void **state)
{
	struct disk *ram = NULL, *slow = NULL;
	uint64_t resp, tresp;
	struct sresp r;
	uint16_t id;
	struct vst s;
	char err[256];
	int head, thead;

	(void)state;
	assert_int_equal(ramdisk_new(16 * MiB, 512, false, &ram, err, sizeof(err)), 0);
	assert_int_equal(delay_new(0, 0, ram, &slow, err, sizeof(err)), 0);
	vst_setup(&s, 1, slow);
	clear_ua(&s, 0);
	clear_ua(&s, 1);

	/* What sg_reset -d sends: LOGICAL UNIT RESET, then 29h/03h. */
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 0, 0, 0),
			 VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x29);
	assert_int_equal(r.ascq, 0x03);
	/* I_T NEXUS RESET: 29h/07h on every LU. */
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, 0, 0, 0),
			 VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	for (unsigned lun = 0; lun < 2; lun++) {
		assert_int_equal(cmd(&s, lun, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
		assert_int_equal(r.asc, 0x29);
		assert_int_equal(r.ascq, 0x07);
	}
	/* Nothing in flight: ABORT TASK completes, QUERY TASK finds nothing. */
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_ABORT_TASK, 0, 0, 42),
			 VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_QUERY_TASK, 0, 0, 42),
			 VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	/* No ACA, unknown functions, absent LUNs and targets. */
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_CLEAR_ACA, 0, 0, 0),
			 VIRTIO_SCSI_S_FUNCTION_REJECTED);
	assert_int_equal(tmf(&s, 99, 0, 0, 0), VIRTIO_SCSI_S_FUNCTION_REJECTED);
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 0, 5, 0),
			 VIRTIO_SCSI_S_INCORRECT_LUN);
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 3, 0, 0),
			 VIRTIO_SCSI_S_BAD_TARGET);

	/* A command in flight (its disk read waits 1 s): QUERY TASK sees
	 * it; ABORT TASK ends it ABORTED, and the command's answer is
	 * published before the TMF's. */
	assert_int_equal(delay_set(slow, 1000000, 0), 0);
	vfront_arena_reset(s.vt.f);
	head = slow_read(&s, 0xff2e1ffac21f75f8ull, &resp);
	assert_true(head >= 0);
	wait_in_flight(&s, VIRTIO_SCSI_T_TMF_QUERY_TASK, 0xff2e1ffac21f75f8ull);
	assert_int_equal(tmf(&s, VIRTIO_SCSI_T_TMF_QUERY_TASK_SET, 0, 1, 0),
			 VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	thead = tmf_submit(&s, VIRTIO_SCSI_T_TMF_ABORT_TASK, 0, 0, 0xff2e1ffac21f75f8ull, &tresp);
	assert_int_equal(vfront_wait_used(s.vt.f, CTL, &id, NULL), 0);
	assert_int_equal(id, thead);
	assert_int_equal(*(uint8_t *)vfront_ptr(s.vt.f, tresp), VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	assert_int_equal(vfront_used_idx(s.vt.f, REQ), (uint16_t)(vfront_avail_idx(s.vt.f, REQ)));
	assert_int_equal(vfront_wait_used(s.vt.f, REQ, &id, NULL), 0);
	assert_int_equal(id, head);
	sresp_parse(&s, resp, 0, &r);
	assert_int_equal(r.response, VIRTIO_SCSI_S_ABORTED);
	assert_int_equal(r.resid, 4096);

	/* LOGICAL UNIT RESET with a command in flight: RESET. */
	vfront_arena_reset(s.vt.f);
	head = slow_read(&s, 7, &resp);
	assert_true(head >= 0);
	wait_in_flight(&s, VIRTIO_SCSI_T_TMF_QUERY_TASK_SET, 0);
	thead = tmf_submit(&s, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 0, 0, 0, &tresp);
	assert_int_equal(vfront_wait_used(s.vt.f, CTL, &id, NULL), 0);
	assert_int_equal(id, thead);
	assert_int_equal(*(uint8_t *)vfront_ptr(s.vt.f, tresp), VIRTIO_SCSI_S_FUNCTION_COMPLETE);
	assert_int_equal(vfront_wait_used(s.vt.f, REQ, &id, NULL), 0);
	assert_int_equal(id, head);
	sresp_parse(&s, resp, 0, &r);
	assert_int_equal(r.response, VIRTIO_SCSI_S_RESET);
	assert_int_equal(delay_set(slow, 0, 0), 0);
	/* The LU works on after the reset's unit attention. */
	clear_ua(&s, 0);
	vst_teardown(&s);
	disk_unref(slow);       /* and the RAM disk it owns */
}

/* Persistent reservations go through the core with the device's one nexus. */
static void test_vhost_scsi_persistent_reserve(void **state)
{
	uint8_t out[24], in_cdb[10] = { 0x5E, 0x00 }, out_cdb[10] = { 0x5F, 0x00 }, buf[64];
	struct sresp r;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	clear_ua(&s, 0);
	/* REGISTER key 0x1234, then READ KEYS lists it. */
	memset(out, 0, sizeof(out));
	ds_put_be64(out + 8, 0x1234);
	ds_put_be32(out_cdb + 5, sizeof(out));
	if (cmd(&s, 0, out_cdb, 10, out, sizeof(out), NULL, 0, &r) != SCSI_GOOD &&
	    r.key == SCSI_SK_ILLEGAL_REQUEST && r.asc == 0x20) {
		/* A RAM disk without reservation support. */
		vst_teardown(&s);
		skip();
	}
	assert_int_equal(r.status, SCSI_GOOD);
	ds_put_be16(in_cdb + 7, sizeof(buf));
	assert_int_equal(cmd(&s, 0, in_cdb, 10, NULL, 0, buf, sizeof(buf), NULL), SCSI_GOOD);
	assert_int_equal(ds_get_be32(buf + 4), 8);
	assert_int_equal(ds_get_be64(buf + 8), 0x1234);
	vst_teardown(&s);
}

static void test_vhost_scsi_malformed(void **state)
{
	uint8_t cdb[10], w[4096], rd[4096];
	struct sresp r;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	clear_ua(&s, 0);
	tu_fill(w, sizeof(w), 3, 0);
	/* A short header, even cut inside the CDB: FAILURE, nothing runs. */
	rw10(cdb, 0x2A, 0, 8);
	for (size_t hl = 1; hl < VIRTIO_SCSI_CMD_REQ_BYTES; hl += 10) {
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .hdr_len = hl };

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_FAILURE);
	}
	/* The readable part ends inside the CDB (a 21-byte header, the
	 * CDB's first two bytes) and writable buffers follow: the rest of
	 * the CDB is not taken from them, nothing runs or is written. */
	{
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .hdr_len = 21,
				  .din_len = 4096 };

		rw10(cdb, 0x28, 0, 8);
		scmd_run(&s, &c, rd, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_FAILURE);
		assert_int_equal(r.used, VIRTIO_SCSI_CMD_RESP_BYTES);
		assert_true(all_bytes(rd, sizeof(rd), 0xa5));
	}
	/* No room for the response: the buffers come back, used length 0. */
	{
		struct scmd c = { .q = REQ, .cdb = tur, .cdb_len = 6, .resp_len = 107 };

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.used, 0);
	}
	/* Direction mismatch: a READ whose room is device-readable, a WRITE
	 * whose data is device-writable. Answered OVERRUN without running:
	 * nothing written into the readable buffer, nothing to the disk. */
	{
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .din_len = 4096,
				  .din_readable = true };

		rw10(cdb, 0x28, 0, 8);
		scmd_run(&s, &c, rd, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OVERRUN);
		assert_true(all_bytes(rd, sizeof(rd), 0xa5));
	}
	{
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .dout = w, .dout_len = 4096,
				  .dout_writable = true };

		rw10(cdb, 0x2A, 0, 8);
		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OVERRUN);
		assert_int_equal(disk_sync_read(s.disk0, 0, rd, sizeof(rd)), DISK_OK);
		assert_true(all_bytes(rd, sizeof(rd), 0));
	}
	/* MODE SELECT with only data-in room: refused before the core would
	 * read a zero parameter list. */
	{
		static const uint8_t msel[6] = { 0x15, 0x10, 0, 0, 24, 0 };
		struct scmd c = { .q = REQ, .cdb = msel, .cdb_len = 6, .din_len = 24 };

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_OVERRUN);
	}
	/* Both directions at once (no VIRTIO_SCSI_F_INOUT): FAILURE. */
	{
		struct scmd c = { .q = REQ, .cdb = cdb, .cdb_len = 10, .dout = w, .dout_len = 512,
				  .din_len = 512 };

		scmd_run(&s, &c, NULL, &r);
		assert_int_equal(r.response, VIRTIO_SCSI_S_FAILURE);
	}
	/* Control requests too short for their type, or of no known type. */
	{
		struct vfront *f = s.vt.f;
		uint64_t req = vfront_alloc(f, 24), resp = vfront_alloc(f, 8);
		struct vfront_buf bufs[2] = { { req, 12, false }, { resp, 1, true } };
		uint16_t id;

		memset(vfront_ptr(f, req), 0, 24);
		*(uint8_t *)vfront_ptr(f, resp) = 0xee;
		assert_true(vfront_add_chain(f, CTL, bufs, 2, false) >= 0);
		assert_int_equal(vfront_wait_used(f, CTL, &id, NULL), 0);
		assert_int_equal(*(uint8_t *)vfront_ptr(f, resp), VIRTIO_SCSI_S_FAILURE);
		ds_put_le32(vfront_ptr(f, req), 77);
		bufs[0].len = 24;
		assert_true(vfront_add_chain(f, CTL, bufs, 2, false) >= 0);
		assert_int_equal(vfront_wait_used(f, CTL, &id, NULL), 0);
		assert_int_equal(*(uint8_t *)vfront_ptr(f, resp), VIRTIO_SCSI_S_FAILURE);
	}
	/* An event buffer that is device-readable is given back unused. */
	{
		uint64_t gpa = vfront_alloc(s.vt.f, 16);
		struct vfront_buf b = { gpa, 16, false };
		uint32_t used;
		uint16_t id;

		assert_true(vfront_add_chain(s.vt.f, EVQ, &b, 1, false) >= 0);
		assert_int_equal(vfront_wait_used(s.vt.f, EVQ, &id, &used), 0);
		assert_int_equal(used, 0);
	}
	/* The rings still work after all that. */
	rw10(cdb, 0x28, 0, 8);
	assert_int_equal(cmd(&s, 0, cdb, 10, NULL, 0, rd, sizeof(rd), NULL), SCSI_GOOD);
	vst_teardown(&s);
}

static void test_vhost_scsi_an(void **state)
{
	uint8_t resp;
	struct vst s;

	(void)state;
	vst_setup(&s, 1, NULL);
	/* A disk reports no classes, the DVD media changes. */
	assert_int_equal(an(&s, VIRTIO_SCSI_T_AN_QUERY, 0, 0xfe, &resp), 0);
	assert_int_equal(resp, VIRTIO_SCSI_S_OK);
	assert_int_equal(an(&s, VIRTIO_SCSI_T_AN_QUERY, 1, 0xfe, &resp),
			 VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE);
	assert_int_equal(resp, VIRTIO_SCSI_S_OK);
	assert_int_equal(an(&s, VIRTIO_SCSI_T_AN_SUBSCRIBE, 1,
			    VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE | VIRTIO_SCSI_EVT_ASYNC_POWER_MGMT,
			    &resp),
			 VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE);
	assert_int_equal(resp, VIRTIO_SCSI_S_OK);
	an(&s, VIRTIO_SCSI_T_AN_QUERY, 4, 0xfe, &resp);
	assert_int_equal(resp, VIRTIO_SCSI_S_INCORRECT_LUN);
	vst_teardown(&s);
}

static void test_vhost_scsi_events(void **state)
{
	struct disk *ram = NULL, *disc2 = NULL;
	struct sevent e;
	struct sresp r;
	struct vst s;
	char err[256];
	uint8_t resp;

	(void)state;
	assert_int_equal(ramdisk_new(16 * MiB, 512, false, &ram, err, sizeof(err)), 0);
	vst_setup(&s, 1, ram);
	/* Linux posts 8 event buffers at start; they stay with the device. */
	post_events(&s, 8);
	clear_ua(&s, 0);
	assert_int_equal(vfront_used_idx(s.vt.f, EVQ), 0);

	/* A resize: PARAM_CHANGE with 2Ah/09h, and the unit attention. */
	assert_int_equal(ramlayer_resize(layered_disk_layer(ram, 0), 32 * MiB / 512), 0);
	wait_event(&s, &e);
	assert_int_equal(e.event, VIRTIO_SCSI_T_PARAM_CHANGE);
	assert_int_equal(e.reason, 0x2A | 0x09 << 8);
	assert_int_equal(e.lun[0], 1);
	assert_int_equal(e.lun[1], 0);
	assert_int_equal(ds_get_be16(e.lun + 2), 0);
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x2A);
	assert_int_equal(r.ascq, 0x09);

	/* A LUN added while the guest runs: RESCAN with the LUN as REPORT
	 * LUNS lists it (01 00 00 02), and 3Fh/0Eh on the others. */
	st_add_lu(s.t, 2, "mem:8M", NULL);
	wait_event(&s, &e);
	assert_int_equal(e.event, VIRTIO_SCSI_T_TRANSPORT_RESET);
	assert_int_equal(e.reason, VIRTIO_SCSI_EVT_RESET_RESCAN);
	assert_int_equal(e.lun[0], 1);
	assert_int_equal(e.lun[2], 0x00);
	assert_int_equal(e.lun[3], 0x02);
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x3F);
	assert_int_equal(r.ascq, 0x0E);
	clear_ua(&s, 2);

	/* That LUN removed: TRANSPORT_RESET/REMOVED (virtio 1.2 §5.6.6.2.1),
	 * on which Linux deletes its device; 3Fh/0Eh on the others. */
	assert_int_equal(scsi_target_remove_lu(s.t, 2), 0);
	wait_event(&s, &e);
	assert_int_equal(e.event, VIRTIO_SCSI_T_TRANSPORT_RESET);
	assert_int_equal(e.reason, VIRTIO_SCSI_EVT_RESET_REMOVED);
	assert_int_equal(e.lun[0], 1);
	assert_int_equal(e.lun[3], 0x02);
	assert_int_equal(cmd(&s, 2, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x25);
	assert_int_equal(cmd(&s, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_CHECK_CONDITION);
	assert_int_equal(r.asc, 0x3F);
	assert_int_equal(r.ascq, 0x0E);

	/* A DVD's new medium: RESCAN of its LUN; after an AN subscription,
	 * ASYNC_NOTIFY with the media class instead. */
	assert_int_equal(ramdisk_new(2 * MiB, 512, false, &disc2, err, sizeof(err)), 0);
	assert_int_equal(scsi_lu_change_media(scsi_target_lu(s.t, 1), disc2, true), 0);
	wait_event(&s, &e);
	assert_int_equal(e.event, VIRTIO_SCSI_T_TRANSPORT_RESET);
	assert_int_equal(e.lun[3], 1);
	an(&s, VIRTIO_SCSI_T_AN_SUBSCRIBE, 1, VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE, &resp);
	assert_int_equal(scsi_lu_change_media(scsi_target_lu(s.t, 1), NULL, true), 0);
	wait_event(&s, &e);
	assert_int_equal(e.event, VIRTIO_SCSI_T_ASYNC_NOTIFY);
	assert_int_equal(e.reason, VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE);
	assert_int_equal(e.lun[3], 1);

	/* Five buffers used, three still held: the stop gives them back
	 * (NO_EVENT) instead of waiting for events forever. */
	assert_int_equal(vfront_stop(s.vt.f, NULL), 0);
	assert_int_equal(vfront_used_idx(s.vt.f, EVQ), 8);
	for (int i = 0; i < 3; i++) {
		wait_event(&s, &e);
		assert_int_equal(e.event, VIRTIO_SCSI_T_NO_EVENT);
	}

	/* Events while no buffer waits queue up; past the queue's room the
	 * next one delivered says EVENTS_MISSED. */
	assert_int_equal(vfront_start(s.vt.f, false), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(scsi_lu_change_media(scsi_target_lu(s.t, 1), i % 2 ? NULL : disc2,
						      true), 0);
	post_events(&s, 1);
	wait_event(&s, &e);
	assert_true(e.event & VIRTIO_SCSI_T_EVENTS_MISSED);
	vst_teardown(&s);
	disk_unref(disc2);
	disk_unref(ram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhost_scsi_negotiation),
		cmocka_unit_test(test_vhost_scsi_inquiry_report_luns),
		cmocka_unit_test(test_vhost_scsi_read_write),
		cmocka_unit_test(test_vhost_scsi_sense),
		cmocka_unit_test(test_vhost_scsi_tmf),
		cmocka_unit_test(test_vhost_scsi_persistent_reserve),
		cmocka_unit_test(test_vhost_scsi_malformed),
		cmocka_unit_test(test_vhost_scsi_an),
		cmocka_unit_test(test_vhost_scsi_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
