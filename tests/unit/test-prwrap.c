/* SPDX-License-Identifier: MIT */
/*
 * test-prwrap.c: the prwrap decorator (storage/prwrap.c).
 *
 * - The contract suites over RAM disks at 512 and 4096 bytes per sector,
 *   and through the spec parser.
 * - Forwarding (docs/openvmm-compat.md §5.4): data, flush, unmap, metadata
 *   pass through; eject and resize watching do not.
 * - The anonymous client: §5.3 as a table, one row per check and effect,
 *   with the generation after each row.
 * - Identified initiators: the SPC-4 access matrix (every type x
 *   unregistered/registrant/holder/anonymous x every op class) from a table
 *   written from the standard, not from the implementation; REGISTER,
 *   RESERVE, RELEASE, CLEAR, PREEMPT and PREEMPT AND ABORT cases; report
 *   contents; the registration limit.
 * - PREEMPT AND ABORT with requests held in flight by a gate backend, and a
 *   two-thread fencing test: no write of the preempted host reaches the
 *   lower disk after the PREEMPT AND ABORT has completed.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/compiler.h"
#include "storage/decorators/prwrap.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

enum {
	WE = DISK_PR_WRITE_EXCLUSIVE,
	EA = DISK_PR_EXCLUSIVE_ACCESS,
	WE_RO = DISK_PR_WRITE_EXCLUSIVE_REG_ONLY,
	EA_RO = DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY,
	WE_AR = DISK_PR_WRITE_EXCLUSIVE_ALL_REG,
	EA_AR = DISK_PR_EXCLUSIVE_ACCESS_ALL_REG,
	NONE = DISK_PR_NONE,
};

#define OK DISK_OK
#define CONFLICT DISK_RESERVATION_CONFLICT
#define INVALID DISK_INVALID_INPUT

/* ---- helpers ------------------------------------------------------------- */

static size_t sizeof_sector(struct disk *d)
{
	return disk_sector_size(d);
}

static struct disk *ram(uint32_t ss)
{
	struct disk *d;
	char err[256];

	if (ramdisk_new(1 << 20, ss, false, &d, err, sizeof(err)) < 0)
		fail_msg("ramdisk_new: %s", err);
	return d;
}

static struct disk *wrap(struct disk *lower)
{
	struct disk *d;

	assert_int_equal(prwrap_new(lower, &d), 0);
	return d;
}

static struct disk_initiator host(uint8_t n)
{
	struct disk_initiator i = { .host_id_len = 16, .controller_id = (uint16_t)(0x100 + n) };

	memset(i.host_id, 0, sizeof(i.host_id));
	i.host_id[0] = 0xee;
	i.host_id[15] = n;
	return i;
}

/* One PR call. @ini NULL = anonymous. */
static int pr(struct disk *d, const struct disk_initiator *ini, enum disk_op op, bool has_cur,
	      uint64_t key, uint64_t new_key, int type, int ptpl, bool abort)
{
	struct disk_io io = { .op = op, .initiator = ini };

	io.u.pr.has_current_key = has_cur;
	io.u.pr.key = key;
	io.u.pr.new_key = new_key;
	io.u.pr.type = (enum disk_pr_type)type;
	io.u.pr.ptpl = ptpl;
	io.u.pr.abort = abort;
	return disk_sync_io(d, &io);
}

static int reg(struct disk *d, const struct disk_initiator *ini, uint64_t key)
{
	return pr(d, ini, DISK_OP_PR_REGISTER, false, 0, key, NONE, -1, false);
}

static int reg_cur(struct disk *d, const struct disk_initiator *ini, uint64_t cur, uint64_t key)
{
	return pr(d, ini, DISK_OP_PR_REGISTER, true, cur, key, NONE, -1, false);
}

static int reserve(struct disk *d, const struct disk_initiator *ini, uint64_t key, int type)
{
	return pr(d, ini, DISK_OP_PR_RESERVE, false, key, 0, type, -1, false);
}

static int release(struct disk *d, const struct disk_initiator *ini, uint64_t key, int type)
{
	return pr(d, ini, DISK_OP_PR_RELEASE, false, key, 0, type, -1, false);
}

static int clear(struct disk *d, const struct disk_initiator *ini, uint64_t key)
{
	return pr(d, ini, DISK_OP_PR_CLEAR, false, key, 0, NONE, -1, false);
}

static int preempt(struct disk *d, const struct disk_initiator *ini, uint64_t key,
		   uint64_t victim, int type, bool abort)
{
	return pr(d, ini, DISK_OP_PR_PREEMPT, false, key, victim, type, -1, abort);
}

static uint32_t caps(struct disk *d, const struct disk_initiator *ini)
{
	struct disk_io io = { .op = DISK_OP_PR_CAPS, .initiator = ini };

	assert_int_equal(disk_sync_io(d, &io), OK);
	return io.u.pr.caps;
}

struct report {
	struct disk_pr_report r;
	struct disk_pr_controller c[PRWRAP_MAX_REGISTRANTS + 1];
};

static void report(struct disk *d, const struct disk_initiator *ini, struct report *out)
{
	struct disk_io io = { .op = DISK_OP_PR_REPORT, .initiator = ini };

	memset(out, 0xa5, sizeof(*out));
	out->r.max_controllers = ARRAY_SIZE(out->c);
	out->r.controllers = out->c;
	io.u.pr.report = &out->r;
	assert_int_equal(disk_sync_io(d, &io), OK);
}

static uint32_t generation(struct disk *d, const struct disk_initiator *ini)
{
	struct report r;

	report(d, ini, &r);
	return r.r.generation;
}

static int rtype(struct disk *d, const struct disk_initiator *ini)
{
	struct report r;

	report(d, ini, &r);
	return r.r.type;
}

/* The report entry of @ini, or NULL. */
static const struct disk_pr_controller *entry_of(const struct report *r,
						 const struct disk_initiator *ini)
{
	for (uint32_t i = 0; i < r->r.nr_controllers && i < r->r.max_controllers; i++)
		if (r->c[i].host_id_len == ini->host_id_len &&
		    memcmp(r->c[i].host_id, ini->host_id, ini->host_id_len) == 0)
			return &r->c[i];
	return NULL;
}

/* Fields of @ini's report entry, which must exist. */
static bool holds(const struct report *r, const struct disk_initiator *ini)
{
	const struct disk_pr_controller *e = entry_of(r, ini);

	assert_non_null(e);
	return e && e->holds_reservation;
}

static uint64_t key_of(const struct report *r, const struct disk_initiator *ini)
{
	const struct disk_pr_controller *e = entry_of(r, ini);

	assert_non_null(e);
	return e ? e->key : 0;
}

static uint16_t ctrl_of(const struct report *r, const struct disk_initiator *ini)
{
	const struct disk_pr_controller *e = entry_of(r, ini);

	assert_non_null(e);
	return e ? e->controller_id : 0;
}

static bool registered(struct disk *d, const struct disk_initiator *ini)
{
	struct report r;

	report(d, ini, &r);
	return entry_of(&r, ini) != NULL;
}

/* The op classes of the access matrix. */
enum io_kind { IO_READ, IO_WRITE, IO_FLUSH, IO_UNMAP, IO_WRITE_ZEROES, IO_BLOCK_STATUS,
	       IO_CACHE, IO_KINDS };
static const bool io_is_write[IO_KINDS] = {
	[IO_WRITE] = true, [IO_FLUSH] = true, [IO_UNMAP] = true, [IO_WRITE_ZEROES] = true,
};
static const char *const io_names[IO_KINDS] = {
	"read", "write", "flush", "unmap", "write-zeroes", "block-status", "cache",
};

/* One request of @kind on sector 1 from @ini (NULL = anonymous). */
static int io_as(struct disk *d, const struct disk_initiator *ini, enum io_kind kind)
{
	uint32_t ss = disk_sector_size(d);
	uint8_t *buf = calloc(1, ss);
	struct iovec iov = { .iov_base = buf, .iov_len = ss };
	struct disk_extent ext[4];
	struct disk_io io = { .sector = 1, .count = 1, .initiator = ini };
	int st;

	assert_non_null(buf);
	switch (kind) {
	case IO_READ: io.op = DISK_OP_READ; io.iov = &iov; io.iovcnt = 1; break;
	case IO_WRITE: io.op = DISK_OP_WRITE; io.iov = &iov; io.iovcnt = 1; break;
	case IO_FLUSH: io.op = DISK_OP_FLUSH; io.count = 0; break;
	case IO_UNMAP: io.op = DISK_OP_UNMAP; break;
	case IO_WRITE_ZEROES: io.op = DISK_OP_WRITE_ZEROES; break;
	case IO_BLOCK_STATUS:
		io.op = DISK_OP_BLOCK_STATUS;
		io.u.bs.extents = ext;
		io.u.bs.max = ARRAY_SIZE(ext);
		break;
	case IO_CACHE: io.op = DISK_OP_CACHE; break;
	default: fail();
	}
	st = disk_sync_io(d, &io);
	free(buf);
	return st;
}

/* ---- contract and forwarding -------------------------------------------------- */

static void test_prwrap_contract_ram_512_4096(void **state)
{
	const uint32_t sizes[] = { 512, 4096 };

	(void)state;
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct disk *d = wrap(ram(sizes[i]));

		assert_string_equal(disk_get_info(d)->type, "prwrap");
		assert_int_equal(disk_sector_size(d), sizes[i]);
		contract_disk(d);
		/* With a registrant, anonymous requests take the checked path
		 * (no reservation yet, so everything is allowed)... */
		{
			struct disk_initiator a = host(1);
			uint64_t count = disk_sector_count(d);

			assert_int_equal(reg(d, &a, 0xa), OK);
			contract_disk(d);
			/* ...and so do the holder's, through tracked child
			 * requests: range errors still come from below. */
			assert_int_equal(reserve(d, &a, 0xa, EA), OK);
			for (int k = 0; k < 3; k++) {
				const uint64_t lba[] = { count, count - 1, ((uint64_t)INT64_MAX >> 12) - 1 };
				const uint64_t n[] = { 1, 2, 1 };
				uint8_t *buf = calloc(2, sizeof_sector(d));
				struct iovec iov = { buf, n[k] * sizeof_sector(d) };
				struct disk_io rd = { .op = DISK_OP_READ, .sector = lba[k], .iov = &iov,
						      .iovcnt = 1, .initiator = &a };
				struct disk_io wr = rd;
				struct disk_io um = { .op = DISK_OP_UNMAP, .sector = lba[k], .count = n[k],
						      .initiator = &a };

				wr.op = DISK_OP_WRITE;
				assert_int_equal(disk_sync_io(d, &rd), DISK_ILLEGAL_BLOCK);
				assert_int_equal(disk_sync_io(d, &wr), DISK_ILLEGAL_BLOCK);
				assert_int_equal(disk_sync_io(d, &um), DISK_ILLEGAL_BLOCK);
				free(buf);
			}
		}
		disk_unref(d);
	}
}

static void test_prwrap_contract_spec(void **state)
{
	struct disk *d;
	char err[256];

	(void)state;
	assert_int_equal(spec_open_str("prwrap:mem:1M", false, NULL, &d, err, sizeof(err)), 0);
	assert_string_equal(disk_get_info(d)->type, "prwrap");
	assert_int_equal(disk_sector_count(d), 2048);
	contract_disk(d);
	disk_unref(d);
	assert_int_equal(spec_open_str("prwrap:mem:1M,ro", false, NULL, &d, err, sizeof(err)), 0);
	assert_true(disk_get_info(d)->read_only);
	contract_disk(d);
	disk_unref(d);
	/* An inner failure comes out with the inner node's text. */
	assert_true(spec_open_str("prwrap:/nonexistent/x.img", false, NULL, &d, err,
				  sizeof(err)) < 0);
	assert_non_null(strstr(err, "/nonexistent/x.img"));
}

/* A backend that counts eject calls and watches resizes, to prove prwrap
 * forwards neither. */
static unsigned ejects, watches;
static uint64_t ej_count(struct disk *d) { return 64; }
static int ej_rw(struct disk *d, struct disk_io *io) { return DISK_OK; }
static int ej_eject(struct disk *d, struct disk_io *io) { ejects++; return DISK_OK; }
static int ej_watch(struct disk *d, struct disk_resize_watch *w) { watches++; return 0; }
static void ej_unwatch(struct disk *d, struct disk_resize_watch *w) { }
static const struct disk_ops ej_ops = {
	.version = DISK_OPS_VERSION, .sector_count = ej_count, .read = ej_rw, .write = ej_rw,
	.eject = ej_eject, .watch_resize = ej_watch, .unwatch_resize = ej_unwatch,
};

static void noop_watch_cb(struct disk_resize_watch *w, uint64_t n) { }

static void test_prwrap_forwarding(void **state)
{
	struct mockdisk m;
	struct mockdisk_opts o = {
		.sectors = 64, .sector_size = 4096, .unmap = DISK_UNMAP_ZEROES, .fua = true,
		.has_disk_id = true, .disk_id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
	};
	struct disk_info li = { .type = "ej", .sector_size = 512, .physical_sector_size = 512,
				.caps = DISK_CAP_EJECT | DISK_CAP_RESIZE };
	struct disk_resize_watch w = { .cb = noop_watch_cb };
	struct disk *d, *e;
	const struct disk_info *i;
	uint8_t buf[4096], back[4096];

	(void)state;
	d = wrap(mockdisk_new(&m, &o));
	i = disk_get_info(d);
	assert_int_equal(i->sector_size, 4096);
	assert_true(i->has_disk_id);
	assert_int_equal(i->disk_id[15], 16);
	assert_true(i->fua_respected);
	assert_int_equal(i->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_true(i->caps & DISK_CAP_PR);
	assert_true(i->caps & DISK_CAP_COHERENT);
	assert_int_equal(disk_sector_count(d), 64);

	tu_fill(buf, sizeof(buf), 7, 0);
	assert_int_equal(disk_sync_write(d, 3, buf, sizeof(buf), DISK_IO_FUA), OK);
	assert_int_equal(m.fua_writes, 1);
	assert_int_equal(disk_sync_read(d, 3, back, sizeof(back)), OK);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(disk_sync_flush(d), OK);
	assert_int_equal(m.flushes, 1);
	assert_int_equal(disk_sync_unmap(d, 3, 1, 0), OK);
	assert_int_equal(m.unmaps, 1);
	assert_int_equal(disk_sync_read(d, 3, back, sizeof(back)), OK);
	assert_true(tu_is_zero(back, sizeof(back)));
	/* PR calls are answered here, never by the lower disk. */
	assert_int_equal(reg(d, NULL, 5), OK);
	assert_int_equal(m.prs, 0);
	disk_unref(d);
	assert_int_equal(m.closes, 1);
	mockdisk_release(&m);

	assert_int_equal(disk_new(&ej_ops, &li, NULL, NULL, &e), 0);
	d = wrap(e);
	assert_false(disk_get_info(d)->caps & (DISK_CAP_EJECT | DISK_CAP_RESIZE));
	{
		struct disk_io io = { .op = DISK_OP_EJECT };

		assert_int_equal(disk_sync_io(d, &io), DISK_UNSUPPORTED);
	}
	assert_int_equal(ejects, 0);
	assert_int_equal(disk_watch_resize(d, &w), -EOPNOTSUPP);
	assert_int_equal(watches, 0);
	disk_unref(d);
}

/* ---- §5.3: the anonymous client, as a table ---------------------------------------------- */

struct anon_state {
	uint64_t key;          /* 0 = not registered */
	int type;
	bool ptpl;
};

struct anon_row {
	const char *name;
	struct anon_state before;
	enum disk_op op;
	bool has_cur;
	uint64_t key, new_key;
	int type, ptpl;
	bool abort;
	int want;
	struct anon_state after;
	uint32_t gen_delta;
};

#define REG DISK_OP_PR_REGISTER
#define RES DISK_OP_PR_RESERVE
#define REL DISK_OP_PR_RELEASE
#define CLR DISK_OP_PR_CLEAR
#define PRE DISK_OP_PR_PREEMPT

static const struct anon_row anon_rows[] = {
	/* register: cur given and not matching (0 matches "unregistered") → conflict;
	 * else store new (0 unregisters and drops the reservation), ptpl if given, gen+1 */
	{ "register, unregistered, no cur", { 0, NONE, false }, REG, false, 0, 5, NONE, -1, false,
	  OK, { 5, NONE, false }, 1 },
	{ "register, unregistered, cur 0", { 0, NONE, false }, REG, true, 0, 5, NONE, -1, false,
	  OK, { 5, NONE, false }, 1 },
	{ "register, unregistered, cur 3", { 0, NONE, false }, REG, true, 3, 5, NONE, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "register, unregistered, new 0", { 0, NONE, false }, REG, false, 0, 0, NONE, -1, false,
	  OK, { 0, NONE, false }, 1 },
	{ "register, replace key", { 5, EA, false }, REG, true, 5, 7, NONE, -1, false,
	  OK, { 7, EA, false }, 1 },
	{ "register, replace key ignoring cur", { 5, EA, false }, REG, false, 99, 7, NONE, -1, false,
	  OK, { 7, EA, false }, 1 },
	{ "register, wrong cur", { 5, EA, false }, REG, true, 6, 7, NONE, -1, false,
	  CONFLICT, { 5, EA, false }, 0 },
	{ "register, cur 0 while registered", { 5, NONE, false }, REG, true, 0, 7, NONE, -1, false,
	  CONFLICT, { 5, NONE, false }, 0 },
	{ "register, new 0 drops the reservation", { 5, WE_RO, false }, REG, true, 5, 0, NONE, -1, false,
	  OK, { 0, NONE, false }, 1 },
	{ "register, ptpl set", { 0, NONE, false }, REG, false, 0, 5, NONE, 1, false,
	  OK, { 5, NONE, true }, 1 },
	{ "register, ptpl left", { 5, NONE, true }, REG, false, 0, 6, NONE, -1, false,
	  OK, { 6, NONE, true }, 1 },
	{ "register, ptpl cleared", { 5, NONE, true }, REG, false, 0, 6, NONE, 0, false,
	  OK, { 6, NONE, false }, 1 },
	{ "register, conflict leaves ptpl", { 5, NONE, false }, REG, true, 4, 6, NONE, 1, false,
	  CONFLICT, { 5, NONE, false }, 0 },
	/* reserve: unregistered or key mismatch → conflict; reserved with a
	 * different type → conflict; set the type (same type idempotent); gen unchanged */
	{ "reserve, unregistered", { 0, NONE, false }, RES, false, 0, 0, EA, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "reserve, unregistered key 0", { 0, NONE, false }, RES, false, 0, 0, WE, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "reserve, wrong key", { 5, NONE, false }, RES, false, 6, 0, EA, -1, false,
	  CONFLICT, { 5, NONE, false }, 0 },
	{ "reserve", { 5, NONE, false }, RES, false, 5, 0, EA, -1, false,
	  OK, { 5, EA, false }, 0 },
	{ "reserve, same type again", { 5, EA, false }, RES, false, 5, 0, EA, -1, false,
	  OK, { 5, EA, false }, 0 },
	{ "reserve, other type", { 5, EA, false }, RES, false, 5, 0, WE, -1, false,
	  CONFLICT, { 5, EA, false }, 0 },
	{ "reserve, all-registrants type is stored", { 5, NONE, false }, RES, false, 5, 0, EA_AR, -1,
	  false, OK, { 5, EA_AR, false }, 0 },
	/* release: unregistered or key mismatch → conflict (before the type);
	 * reserved: type mismatch → invalid, else clear; not reserved: ok */
	{ "release, unregistered", { 0, NONE, false }, REL, false, 0, 0, EA, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "release, wrong key and type", { 5, EA, false }, REL, false, 6, 0, WE, -1, false,
	  CONFLICT, { 5, EA, false }, 0 },
	{ "release, wrong type", { 5, EA, false }, REL, false, 5, 0, WE, -1, false,
	  INVALID, { 5, EA, false }, 0 },
	{ "release", { 5, EA, false }, REL, false, 5, 0, EA, -1, false,
	  OK, { 5, NONE, false }, 0 },
	{ "release, not reserved", { 5, NONE, false }, REL, false, 5, 0, WE, -1, false,
	  OK, { 5, NONE, false }, 0 },
	/* clear: unregistered or key mismatch → conflict; drop both, gen+1 */
	{ "clear, unregistered", { 0, NONE, false }, CLR, false, 0, 0, NONE, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "clear, wrong key", { 5, EA, false }, CLR, false, 6, 0, NONE, -1, false,
	  CONFLICT, { 5, EA, false }, 0 },
	{ "clear", { 5, EA, true }, CLR, false, 5, 0, NONE, -1, false,
	  OK, { 0, NONE, true }, 1 },
	/* preempt: unregistered or cur mismatch → conflict; preempt key !=
	 * stored or (reserved and type differs) → invalid; clear the
	 * reservation, keep the registration, gen+1; abort ignored */
	{ "preempt, unregistered", { 0, NONE, false }, PRE, false, 0, 0, EA, -1, false,
	  CONFLICT, { 0, NONE, false }, 0 },
	{ "preempt, wrong cur and preempt key", { 5, EA, false }, PRE, false, 6, 9, WE, -1, false,
	  CONFLICT, { 5, EA, false }, 0 },
	{ "preempt, other preempt key", { 5, EA, false }, PRE, false, 5, 9, EA, -1, false,
	  INVALID, { 5, EA, false }, 0 },
	{ "preempt, other type", { 5, EA, false }, PRE, false, 5, 5, WE, -1, false,
	  INVALID, { 5, EA, false }, 0 },
	{ "preempt", { 5, EA, false }, PRE, false, 5, 5, EA, -1, false,
	  OK, { 5, NONE, false }, 1 },
	{ "preempt, not reserved, any type", { 5, NONE, false }, PRE, false, 5, 5, WE_RO, -1, false,
	  OK, { 5, NONE, false }, 1 },
	{ "preempt and abort", { 5, WE, false }, PRE, false, 5, 5, WE, -1, true,
	  OK, { 5, NONE, false }, 1 },
	/* argument check of ours: "no type" is not a type */
	{ "reserve, type none", { 5, NONE, false }, RES, false, 5, 0, NONE, -1, false,
	  INVALID, { 5, NONE, false }, 0 },
};

static void anon_check(struct disk *d, const struct anon_state *want, uint32_t gen,
		       const char *name)
{
	struct report r;

	report(d, NULL, &r);
	if (r.r.generation != gen || r.r.type != (enum disk_pr_type)want->type ||
	    r.r.ptpl != want->ptpl || r.r.nr_controllers != (want->key != 0) ||
	    (want->key && r.c[0].key != want->key))
		fail_msg("%s: got gen %u type %d ptpl %d regs %u key %#llx; want gen %u type %d "
			 "ptpl %d key %#llx", name, r.r.generation, r.r.type, r.r.ptpl,
			 r.r.nr_controllers, r.r.nr_controllers ? (unsigned long long)r.c[0].key : 0,
			 gen, want->type, want->ptpl, (unsigned long long)want->key);
	if (want->key) {
		static const uint8_t zero[8];

		assert_int_equal(r.c[0].host_id_len, 8);
		assert_memory_equal(r.c[0].host_id, zero, 8);
		assert_int_equal(r.c[0].controller_id, 0);
		assert_int_equal(r.c[0].holds_reservation, want->type != NONE);
	}
}

static void test_prwrap_anon_table(void **state)
{
	(void)state;
	for (unsigned i = 0; i < ARRAY_SIZE(anon_rows); i++) {
		const struct anon_row *row = &anon_rows[i];
		struct disk *d = wrap(ram(512));
		uint32_t gen;
		int st;

		/* Build the "before" state through the API. */
		if (row->before.key || row->before.ptpl)
			assert_int_equal(pr(d, NULL, REG, false, 0, row->before.key, NONE,
					    row->before.ptpl ? 1 : -1, false), OK);
		if (row->before.type != NONE)
			assert_int_equal(reserve(d, NULL, row->before.key, row->before.type), OK);
		gen = generation(d, NULL);
		anon_check(d, &row->before, gen, row->name);

		st = pr(d, NULL, row->op, row->has_cur, row->key, row->new_key, row->type,
			row->ptpl, row->abort);
		if (st != row->want)
			fail_msg("%s: got %s, want %s", row->name, disk_status_str(st),
				 disk_status_str(row->want));
		anon_check(d, &row->after, gen + row->gen_delta, row->name);
		disk_unref(d);
	}
}

static void test_prwrap_anon_caps_and_io(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator b = host(2);
	uint32_t c;

	(void)state;
	c = caps(d, NULL);
	assert_int_equal(c, DISK_PR_CAP_WE | DISK_PR_CAP_EA | DISK_PR_CAP_WE_RO |
			 DISK_PR_CAP_EA_RO | DISK_PR_CAP_PTPL);
	/* §5.3: I/O is never checked against the reservation. */
	assert_int_equal(reg(d, NULL, 5), OK);
	assert_int_equal(reserve(d, NULL, 5, EA), OK);
	for (int k = 0; k < IO_KINDS; k++) {
		assert_int_equal(io_as(d, NULL, (enum io_kind)k), OK);
		assert_int_equal(io_as(d, &b, (enum io_kind)k), OK);
	}
	/* A preempt-and-abort of the anonymous client aborts nothing. */
	assert_int_equal(preempt(d, NULL, 5, 5, EA, true), OK);
	assert_int_equal(io_as(d, NULL, IO_WRITE), OK);
	/* Empty report. */
	{
		struct report r;

		assert_int_equal(reg(d, NULL, 0), OK);
		report(d, NULL, &r);
		assert_int_equal(r.r.nr_controllers, 0);
		assert_int_equal(r.r.type, NONE);
	}
	disk_unref(d);
}

/* The anonymous and identified states do not see each other's PR state. */
static void test_prwrap_anon_and_identified_are_separate(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator a = host(1);
	struct report r;

	(void)state;
	assert_int_equal(reg(d, NULL, 5), OK);
	assert_int_equal(reserve(d, NULL, 5, EA), OK);
	/* a is not the anonymous client: it starts unregistered. */
	assert_int_equal(reserve(d, &a, 5, EA), CONFLICT);
	assert_int_equal(reg(d, &a, 7), OK);
	assert_int_equal(reserve(d, &a, 7, WE), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.nr_controllers, 1);
	assert_int_equal(r.r.type, WE);
	assert_int_equal(r.c[0].key, 7);
	report(d, NULL, &r);
	assert_int_equal(r.r.nr_controllers, 1);
	assert_int_equal(r.r.type, EA);
	assert_int_equal(r.c[0].key, 5);
	/* Anonymous I/O counts as a non-registrant of the identified table. */
	assert_int_equal(io_as(d, NULL, IO_READ), OK);
	assert_int_equal(io_as(d, NULL, IO_WRITE), CONFLICT);
	assert_int_equal(io_as(d, &a, IO_WRITE), OK);
	disk_unref(d);
}

/* ---- identified initiators: the access matrix ------------------------------------------------- */

/*
 * SPC-4 persistent reservation types (and NVMe's reservation access table):
 * what a non-registrant, a registrant that does not hold the reservation
 * and a holder may do. 1 = allowed, 0 = RESERVATION CONFLICT.
 * For the all-registrants types every registrant is a holder.
 */
static const struct {
	int type;
	bool nonreg_read, nonreg_write, reg_read, reg_write;
} spc4_access[] = {
	{ WE,    1, 0, 1, 0 },    /* Write Exclusive */
	{ EA,    0, 0, 0, 0 },    /* Exclusive Access */
	{ WE_RO, 1, 0, 1, 1 },    /* Write Exclusive - Registrants Only */
	{ EA_RO, 0, 0, 1, 1 },    /* Exclusive Access - Registrants Only */
	{ WE_AR, 1, 0, 1, 1 },    /* Write Exclusive - All Registrants */
	{ EA_AR, 0, 0, 1, 1 },    /* Exclusive Access - All Registrants */
};

static void expect_io(struct disk *d, const struct disk_initiator *ini, enum io_kind k, bool ok,
		      int type, const char *who)
{
	int st = io_as(d, ini, k);

	if (st != (ok ? OK : CONFLICT))
		fail_msg("type %d, %s, %s: got %s, want %s", type, who, io_names[k],
			 disk_status_str(st), ok ? "success" : "reservation conflict");
}

static void test_prwrap_access_matrix(void **state)
{
	(void)state;
	for (unsigned t = 0; t < ARRAY_SIZE(spc4_access); t++) {
		const int type = spc4_access[t].type;
		struct disk *d = wrap(ram(512));
		struct disk_initiator holder = host(1), registrant = host(2), outsider = host(3);
		struct report r;

		assert_int_equal(reg(d, &holder, 0xa), OK);
		assert_int_equal(reg(d, &registrant, 0xb), OK);
		/* Before any reservation everyone may do everything. */
		for (int k = 0; k < IO_KINDS; k++) {
			expect_io(d, &outsider, (enum io_kind)k, true, NONE, "outsider");
			expect_io(d, &registrant, (enum io_kind)k, true, NONE, "registrant");
		}
		assert_int_equal(reserve(d, &holder, 0xa, type), OK);
		report(d, &holder, &r);
		assert_int_equal(r.r.type, type);
		assert_true(holds(&r, &holder));
		assert_int_equal(holds(&r, &registrant),
				 type == WE_AR || type == EA_AR);

		for (int k = 0; k < IO_KINDS; k++) {
			bool w = io_is_write[k];

			expect_io(d, &holder, (enum io_kind)k, true, type, "holder");
			expect_io(d, &registrant, (enum io_kind)k,
				  w ? spc4_access[t].reg_write : spc4_access[t].reg_read, type,
				  "registrant");
			expect_io(d, &outsider, (enum io_kind)k,
				  w ? spc4_access[t].nonreg_write : spc4_access[t].nonreg_read, type,
				  "non-registrant");
			expect_io(d, NULL, (enum io_kind)k,
				  w ? spc4_access[t].nonreg_write : spc4_access[t].nonreg_read, type,
				  "anonymous");
		}
		/* The holder releases: everyone is back to full access. */
		assert_int_equal(release(d, &holder, 0xa, type), OK);
		for (int k = 0; k < IO_KINDS; k++)
			expect_io(d, &outsider, (enum io_kind)k, true, NONE, "outsider after release");
		disk_unref(d);
	}
}

/* Same identity, different controllers: one registration. A shorter host
 * id is a different identity from a longer one with the same prefix. */
static void test_prwrap_identity(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator a = host(1), a2 = host(1), a8 = host(1);
	struct report r;

	(void)state;
	a2.controller_id = 77;
	a8.host_id_len = 8;
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reserve(d, &a2, 0xa, EA), OK);
	assert_int_equal(io_as(d, &a2, IO_WRITE), OK);
	assert_int_equal(io_as(d, &a8, IO_READ), CONFLICT);
	report(d, &a, &r);
	assert_int_equal(r.r.nr_controllers, 1);
	assert_int_equal(r.c[0].host_id_len, 16);
	assert_memory_equal(r.c[0].host_id, a.host_id, 16);
	assert_int_equal(r.c[0].controller_id, a.controller_id);
	assert_int_equal(caps(d, &a), DISK_PR_CAP_WE | DISK_PR_CAP_EA | DISK_PR_CAP_WE_RO |
			 DISK_PR_CAP_EA_RO | DISK_PR_CAP_WE_AR | DISK_PR_CAP_EA_AR |
			 DISK_PR_CAP_PTPL);
	disk_unref(d);
}

/* ---- identified initiators: PR OUT actions -------------------------------------------------------- */

static void test_prwrap_register(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator a = host(1), b = host(2);
	struct report r;
	uint32_t g;

	(void)state;
	g = generation(d, &a);
	/* Unregistered: RESERVATION KEY must be 0 when given. */
	assert_int_equal(reg_cur(d, &a, 3, 0xa), CONFLICT);
	assert_int_equal(generation(d, &a), g);
	/* Unregistered with key 0: performed, nothing registered, counted. */
	assert_int_equal(reg(d, &a, 0), OK);
	assert_int_equal(generation(d, &a), g + 1);
	assert_false(registered(d, &a));
	assert_int_equal(reg_cur(d, &a, 0, 0xa), OK);
	assert_int_equal(pr(d, &b, REG, false, 0, 0xb, NONE, 1, false), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.generation, g + 3);
	assert_int_equal(r.r.nr_controllers, 2);
	assert_true(r.r.ptpl);
	assert_int_equal(key_of(&r, &a), 0xa);
	assert_int_equal(key_of(&r, &b), 0xb);
	assert_int_equal(ctrl_of(&r, &b), b.controller_id);
	/* Registered: the current key must match, unless ignored. */
	assert_int_equal(reg_cur(d, &a, 0xb, 0xc), CONFLICT);
	assert_int_equal(reg_cur(d, &a, 0xa, 0xc), OK);
	assert_int_equal(reg(d, &a, 0xd), OK);
	report(d, &a, &r);
	assert_int_equal(key_of(&r, &a), 0xd);
	assert_int_equal(r.r.generation, g + 5);
	/* A reservation follows its holder through a key change... */
	assert_int_equal(reserve(d, &a, 0xd, WE), OK);
	assert_int_equal(reg_cur(d, &a, 0xd, 0xe), OK);
	report(d, &a, &r);
	assert_true(holds(&r, &a));
	assert_int_equal(r.r.type, WE);
	/* ...and goes when the holder unregisters. */
	assert_int_equal(reg_cur(d, &a, 0xe, 0), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.type, NONE);
	assert_int_equal(r.r.nr_controllers, 1);
	/* A non-holder unregistering leaves the reservation alone. */
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE_RO), OK);
	assert_int_equal(reg(d, &b, 0), OK);
	assert_int_equal(rtype(d, &a), WE_RO);
	/* Report room smaller than the registrant count. */
	assert_int_equal(reg(d, &b, 0xb), OK);
	{
		struct disk_pr_controller one[1];
		struct disk_pr_report rr = { .max_controllers = 1, .controllers = one };
		struct disk_io io = { .op = DISK_OP_PR_REPORT, .initiator = &a };

		io.u.pr.report = &rr;
		assert_int_equal(disk_sync_io(d, &io), OK);
		assert_int_equal(rr.nr_controllers, 2);
		assert_true(one[0].key == 0xa || one[0].key == 0xb);
	}
	disk_unref(d);
}

static void test_prwrap_registration_limit(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator h;
	struct disk_io io = { .op = DISK_OP_PR_REGISTER, .initiator = &h };

	(void)state;
	for (unsigned i = 0; i < PRWRAP_MAX_REGISTRANTS; i++) {
		h = host((uint8_t)i);
		assert_int_equal(reg(d, &h, 100 + i), OK);
	}
	h = host(PRWRAP_MAX_REGISTRANTS);
	io.u.pr.new_key = 1;
	assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, ENOSPC);
	/* Freeing one makes room. */
	h = host(3);
	assert_int_equal(reg(d, &h, 0), OK);
	h = host(PRWRAP_MAX_REGISTRANTS);
	assert_int_equal(reg(d, &h, 1), OK);
	disk_unref(d);
}

static void test_prwrap_reserve_release(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator a = host(1), b = host(2), c = host(3);
	uint32_t g;

	(void)state;
	assert_int_equal(reserve(d, &c, 0, WE), CONFLICT);        /* unregistered */
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	g = generation(d, &a);
	assert_int_equal(reserve(d, &a, 0xb, WE), CONFLICT);      /* someone else's key */
	assert_int_equal(reserve(d, &a, 0xa, NONE), INVALID);
	assert_int_equal(reserve(d, &a, 0xa, EA), OK);
	assert_int_equal(reserve(d, &a, 0xa, EA), OK);            /* holder, same type */
	assert_int_equal(reserve(d, &a, 0xa, WE), CONFLICT);      /* holder, other type */
	assert_int_equal(reserve(d, &b, 0xb, EA), CONFLICT);      /* not the holder */
	assert_int_equal(rtype(d, &a), EA);
	/* Release by a registrant that does not hold it: success, no change. */
	assert_int_equal(release(d, &b, 0xb, EA), OK);
	assert_int_equal(release(d, &b, 0xb, WE), OK);
	assert_int_equal(rtype(d, &a), EA);
	assert_int_equal(release(d, &c, 0, EA), CONFLICT);        /* unregistered */
	assert_int_equal(release(d, &a, 0xb, EA), CONFLICT);      /* wrong key */
	assert_int_equal(release(d, &a, 0xa, WE), INVALID);       /* holder, wrong type */
	assert_int_equal(rtype(d, &a), EA);
	assert_int_equal(release(d, &a, 0xa, EA), OK);
	assert_int_equal(rtype(d, &a), NONE);
	assert_int_equal(release(d, &a, 0xa, EA), OK);            /* nothing reserved */
	/* RESERVE and RELEASE leave the generation alone. */
	assert_int_equal(generation(d, &a), g);
	disk_unref(d);
}

static void test_prwrap_all_registrants(void **state)
{
	const int types[] = { WE_AR, EA_AR };

	(void)state;
	for (unsigned t = 0; t < ARRAY_SIZE(types); t++) {
		struct disk *d = wrap(ram(512));
		struct disk_initiator a = host(1), b = host(2), c = host(3);
		struct report r;

		assert_int_equal(reg(d, &a, 0xa), OK);
		assert_int_equal(reg(d, &b, 0xb), OK);
		assert_int_equal(reserve(d, &a, 0xa, types[t]), OK);
		/* Every registrant holds it, so may reserve it again... */
		assert_int_equal(reserve(d, &b, 0xb, types[t]), OK);
		assert_int_equal(reserve(d, &b, 0xb, WE), CONFLICT);
		/* ...and a later registrant holds it too. */
		assert_int_equal(io_as(d, &c, IO_WRITE), CONFLICT);
		assert_int_equal(reg(d, &c, 0xc), OK);
		report(d, &a, &r);
		assert_true(holds(&r, &a));
		assert_true(holds(&r, &b));
		assert_true(holds(&r, &c));
		assert_int_equal(io_as(d, &c, IO_WRITE), OK);
		/* Unregistering does not release it until the last one goes. */
		assert_int_equal(reg(d, &a, 0), OK);
		assert_int_equal(reg(d, &c, 0), OK);
		assert_int_equal(rtype(d, &b), types[t]);
		assert_int_equal(reg(d, &b, 0), OK);
		assert_int_equal(rtype(d, &b), NONE);
		/* Any registrant may release it, for everyone. */
		assert_int_equal(reg(d, &a, 0xa), OK);
		assert_int_equal(reg(d, &b, 0xb), OK);
		assert_int_equal(reserve(d, &a, 0xa, types[t]), OK);
		assert_int_equal(release(d, &b, 0xb, WE_RO), INVALID);
		assert_int_equal(release(d, &b, 0xb, types[t]), OK);
		assert_int_equal(rtype(d, &a), NONE);
		assert_int_equal(io_as(d, &c, IO_WRITE), OK);
		disk_unref(d);
	}
}

static void test_prwrap_clear(void **state)
{
	struct disk *d = wrap(ram(512));
	struct disk_initiator a = host(1), b = host(2), c = host(3);
	struct report r;
	uint32_t g;

	(void)state;
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reserve(d, &a, 0xa, EA_RO), OK);
	g = generation(d, &a);
	assert_int_equal(clear(d, &c, 0), CONFLICT);
	assert_int_equal(clear(d, &b, 0xa), CONFLICT);
	assert_int_equal(generation(d, &a), g);
	assert_int_equal(io_as(d, &c, IO_READ), CONFLICT);
	/* Any registrant may clear, holder or not. */
	assert_int_equal(clear(d, &b, 0xb), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.generation, g + 1);
	assert_int_equal(r.r.nr_controllers, 0);
	assert_int_equal(r.r.type, NONE);
	assert_int_equal(io_as(d, &c, IO_WRITE), OK);
	assert_int_equal(reserve(d, &a, 0xa, EA), CONFLICT);
	disk_unref(d);
}

static void test_prwrap_preempt(void **state)
{
	struct disk_initiator a = host(1), b = host(2), c = host(3), e = host(5);
	struct disk *d;
	struct report r;
	uint32_t g;

	(void)state;
	/* Preempting the holder: its registration and reservation go; the
	 * requester gets a reservation of the type it asks for. */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reg(d, &c, 0xc), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE_RO), OK);
	g = generation(d, &a);
	assert_int_equal(preempt(d, &e, 0, 0xa, EA, false), CONFLICT);   /* unregistered */
	assert_int_equal(preempt(d, &b, 0xc, 0xa, EA, false), CONFLICT); /* wrong key */
	assert_int_equal(preempt(d, &b, 0xb, 0, EA, false), INVALID);    /* key 0, not all-reg */
	assert_int_equal(preempt(d, &b, 0xb, 0x99, EA, false), CONFLICT);/* nobody has it */
	assert_int_equal(generation(d, &a), g);
	assert_int_equal(preempt(d, &b, 0xb, 0xa, EA, false), OK);
	report(d, &b, &r);
	assert_int_equal(r.r.generation, g + 1);
	assert_int_equal(r.r.type, EA);
	assert_null(entry_of(&r, &a));
	assert_true(holds(&r, &b));
	assert_false(holds(&r, &c));
	assert_int_equal(io_as(d, &a, IO_READ), CONFLICT);
	assert_int_equal(io_as(d, &c, IO_READ), CONFLICT);
	assert_int_equal(io_as(d, &b, IO_WRITE), OK);
	/* The preempted host must register again. */
	assert_int_equal(reserve(d, &a, 0xa, EA), CONFLICT);
	disk_unref(d);

	/* Preempting a non-holder's key removes those registrations only;
	 * the reservation and its type stay. */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reg(d, &c, 0xc), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE_RO), OK);
	assert_int_equal(io_as(d, &c, IO_WRITE), OK);
	assert_int_equal(preempt(d, &b, 0xb, 0xc, EA, false), OK);
	report(d, &b, &r);
	assert_int_equal(r.r.type, WE_RO);
	assert_true(holds(&r, &a));
	assert_null(entry_of(&r, &c));
	assert_int_equal(r.r.nr_controllers, 2);
	assert_int_equal(io_as(d, &c, IO_WRITE), CONFLICT);
	assert_int_equal(io_as(d, &c, IO_READ), OK);
	disk_unref(d);

	/* No reservation: preempt just removes registrations (shared keys
	 * all go, the requester's too when it shares the key). */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0x5), OK);
	assert_int_equal(reg(d, &c, 0x5), OK);
	assert_int_equal(preempt(d, &a, 0xa, 0x5, WE, false), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.nr_controllers, 1);
	assert_int_equal(r.r.type, NONE);
	assert_int_equal(reg(d, &b, 0xa), OK);
	assert_int_equal(preempt(d, &a, 0xa, 0xa, WE, false), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.nr_controllers, 0);
	disk_unref(d);

	/* The holder preempts itself to change the type, keeping its
	 * registration; other registrations with its key go. */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xa), OK);
	assert_int_equal(reg(d, &c, 0xc), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE), OK);
	assert_int_equal(preempt(d, &a, 0xa, 0xa, EA_RO, false), OK);
	report(d, &a, &r);
	assert_int_equal(r.r.type, EA_RO);
	assert_true(holds(&r, &a));
	assert_null(entry_of(&r, &b));
	assert_non_null(entry_of(&r, &c));
	disk_unref(d);
}

static void test_prwrap_preempt_all_registrants(void **state)
{
	struct disk_initiator a = host(1), b = host(2), c = host(3);
	struct disk *d;
	struct report r;

	(void)state;
	/* Key 0: every other registration goes, a new reservation of the
	 * requested type for the requester. */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reg(d, &c, 0xc), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE_AR), OK);
	assert_int_equal(preempt(d, &b, 0xb, 0, EA, false), OK);
	report(d, &b, &r);
	assert_int_equal(r.r.nr_controllers, 1);
	assert_int_equal(r.r.type, EA);
	assert_true(holds(&r, &b));
	assert_int_equal(io_as(d, &a, IO_READ), CONFLICT);
	disk_unref(d);

	/* Key K: the registrations with K go, the reservation stays. */
	d = wrap(ram(512));
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reg(d, &c, 0xc), OK);
	assert_int_equal(reserve(d, &a, 0xa, EA_AR), OK);
	assert_int_equal(preempt(d, &b, 0xb, 0x77, EA, false), CONFLICT);
	assert_int_equal(preempt(d, &b, 0xb, 0xa, EA, false), OK);
	report(d, &b, &r);
	assert_int_equal(r.r.nr_controllers, 2);
	assert_int_equal(r.r.type, EA_AR);
	assert_null(entry_of(&r, &a));
	assert_int_equal(io_as(d, &a, IO_READ), CONFLICT);
	assert_int_equal(io_as(d, &c, IO_WRITE), OK);
	/* The requester's own key never removes itself here. */
	assert_int_equal(preempt(d, &b, 0xb, 0xb, EA, false), CONFLICT);
	disk_unref(d);
}

/* ---- PREEMPT AND ABORT ----------------------------------------------------------------------- */

/* A backend that holds reads and writes until the test lets them go. */
#define GATE_MAX 16
static struct {
	struct disk_io *held[GATE_MAX];
	unsigned n;
	unsigned writes_landed;
} gate;

static uint64_t gate_count(struct disk *d) { return 64; }
static int gate_rw(struct disk *d, struct disk_io *io)
{
	if (io->sector + io->count > 64)
		return DISK_ILLEGAL_BLOCK;
	assert_true(gate.n < GATE_MAX);
	gate.held[gate.n++] = io;
	return DISK_PENDING;
}
static const struct disk_ops gate_ops = {
	.version = DISK_OPS_VERSION, .sector_count = gate_count, .read = gate_rw, .write = gate_rw,
};

static void gate_open(void)
{
	unsigned n = gate.n;

	gate.n = 0;
	for (unsigned i = 0; i < n; i++) {
		if (gate.held[i]->op == DISK_OP_WRITE)
			gate.writes_landed++;
		disk_io_complete(gate.held[i], DISK_OK);
	}
}

struct async {
	struct disk_io io;
	struct iovec iov;
	uint8_t buf[512];
	bool done;
	unsigned order;
};
static unsigned completion_clock;

static void async_done(struct disk_io *io)
{
	struct async *a = container_of(io, struct async, io);

	a->done = true;
	a->order = ++completion_clock;
}

static void async_rw(struct disk *d, struct async *a, const struct disk_initiator *ini,
		     enum disk_op op)
{
	memset(a, 0, sizeof(*a));
	a->iov.iov_base = a->buf;
	a->iov.iov_len = sizeof(a->buf);
	a->io.op = op;
	a->io.sector = 2;
	a->io.iov = &a->iov;
	a->io.iovcnt = 1;
	a->io.initiator = ini;
	a->io.done = async_done;
	disk_submit(d, &a->io);
}

static void async_preempt(struct disk *d, struct async *a, const struct disk_initiator *ini,
			  uint64_t key, uint64_t victim, int type, bool abort)
{
	memset(a, 0, sizeof(*a));
	a->io.op = DISK_OP_PR_PREEMPT;
	a->io.initiator = ini;
	a->io.u.pr.key = key;
	a->io.u.pr.new_key = victim;
	a->io.u.pr.type = (enum disk_pr_type)type;
	a->io.u.pr.abort = abort;
	a->io.done = async_done;
	disk_submit(d, &a->io);
}

static void spin(unsigned passes)
{
	for (unsigned i = 0; i < passes; i++)
		reactor_run_once(tu_reactor(), false);
}

static struct disk *gate_disk(void)
{
	struct disk_info info = { .type = "gate", .sector_size = 512, .physical_sector_size = 512 };
	struct disk *lower;

	memset(&gate, 0, sizeof(gate));
	assert_int_equal(disk_new(&gate_ops, &info, NULL, NULL, &lower), 0);
	return wrap(lower);
}

static void test_prwrap_preempt_and_abort(void **state)
{
	struct disk_initiator a = host(1), b = host(2), c = host(3);
	struct async wa, ra, wb, rc, p;
	struct disk *d = gate_disk();

	(void)state;
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(reg(d, &b, 0xb), OK);
	assert_int_equal(reserve(d, &a, 0xa, WE_RO), OK);
	/* In flight: two requests of a, one of b, one of unregistered c. */
	async_rw(d, &wa, &a, DISK_OP_WRITE);
	async_rw(d, &ra, &a, DISK_OP_READ);
	async_rw(d, &wb, &b, DISK_OP_WRITE);
	async_rw(d, &rc, &c, DISK_OP_READ);
	spin(4);
	assert_int_equal(gate.n, 4);
	async_preempt(d, &p, &b, 0xb, 0xa, WE_RO, true);
	spin(8);
	/* The preempt waits for a's requests to finish below. */
	assert_false(p.done);
	assert_false(wa.done);
	/* a is out already: new requests of a are refused at once. */
	{
		struct async late;

		async_rw(d, &late, &a, DISK_OP_WRITE);
		spin(4);
		assert_true(late.done);
		assert_int_equal(late.io.status, CONFLICT);
	}
	gate_open();
	spin(8);
	assert_true(p.done);
	assert_int_equal(p.io.status, OK);
	assert_int_equal(wa.io.status, DISK_ABORTED_PREEMPT);
	assert_int_equal(ra.io.status, DISK_ABORTED_PREEMPT);
	assert_int_equal(wb.io.status, OK);       /* the requester's own */
	assert_int_equal(rc.io.status, OK);       /* never registered: not tracked */
	assert_true(p.order > wa.order && p.order > ra.order);
	assert_int_equal(rtype(d, &b), WE_RO);
	assert_false(registered(d, &a));

	/* Plain PREEMPT: a's requests in flight finish normally, the preempt
	 * does not wait. */
	assert_int_equal(reg(d, &a, 0xa), OK);
	async_rw(d, &wa, &a, DISK_OP_WRITE);
	spin(4);
	async_preempt(d, &p, &b, 0xb, 0xa, WE_RO, false);
	spin(4);
	assert_true(p.done);
	assert_int_equal(p.io.status, OK);
	gate_open();
	spin(4);
	assert_int_equal(wa.io.status, OK);

	/* PREEMPT AND ABORT with nothing in flight completes at once, and a
	 * slot that drained is usable again. */
	assert_int_equal(reg(d, &a, 0xa), OK);
	assert_int_equal(preempt(d, &b, 0xb, 0xa, WE_RO, true), OK);
	assert_int_equal(reg(d, &a, 0xa), OK);
	async_rw(d, &ra, &a, DISK_OP_READ);
	spin(4);
	gate_open();
	spin(4);
	assert_true(ra.done);
	assert_int_equal(ra.io.status, OK);
	disk_unref(d);
}

/* ---- fencing under concurrency ------------------------------------------------------------------ */

/* A lower disk whose writes land (and complete) 20 us after they are
 * submitted, recording on a global clock when writes of host a land. */
static atomic_ulong fence_clock;
static atomic_ulong fence_last_a_write;
static atomic_ulong fence_a_landed;
static const uint8_t fence_a_id = 1;

struct landing {
	struct reactor_timer t;
	struct disk_io *io;
};

static void fence_land(struct reactor_timer *t)
{
	struct landing *l = container_of(t, struct landing, t);
	struct disk_io *io = l->io;

	if (io->op == DISK_OP_WRITE && io->initiator && io->initiator->host_id[15] == fence_a_id) {
		atomic_store(&fence_last_a_write, atomic_fetch_add(&fence_clock, 1) + 1);
		atomic_fetch_add(&fence_a_landed, 1);
	}
	free(l);
	disk_io_complete(io, DISK_OK);
}

static uint64_t fence_count(struct disk *d) { return 1024; }
static int fence_rw(struct disk *d, struct disk_io *io)
{
	struct landing *l;

	if (io->sector + io->count > 1024)
		return DISK_ILLEGAL_BLOCK;
	l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->io = io;
	l->t.fn = fence_land;
	reactor_timer_start(io->reactor, &l->t, 20 * 1000);
	return DISK_PENDING;
}
static const struct disk_ops fence_ops = {
	.version = DISK_OPS_VERSION, .sector_count = fence_count, .read = fence_rw, .write = fence_rw,
};

struct fence_worker {
	struct disk *d;
	atomic_bool stop;
	unsigned long ok, conflict, aborted, other;
};

struct fence_slot {
	struct disk_io io;
	struct iovec iov;
	uint8_t buf[512];
	struct fence_worker *w;
	struct disk_initiator *ini;
};

static void fence_submit(struct fence_slot *s);

static void fence_done(struct disk_io *io)
{
	struct fence_slot *s = container_of(io, struct fence_slot, io);

	switch (io->status) {
	case OK: s->w->ok++; break;
	case CONFLICT: s->w->conflict++; break;
	case DISK_ABORTED_PREEMPT: s->w->aborted++; break;
	default: s->w->other++; break;
	}
	if (!atomic_load(&s->w->stop))
		fence_submit(s);
	else
		s->ini = NULL;
}

static void fence_submit(struct fence_slot *s)
{
	memset(&s->io, 0, sizeof(s->io));
	s->iov.iov_base = s->buf;
	s->iov.iov_len = sizeof(s->buf);
	s->io.op = DISK_OP_WRITE;
	s->io.sector = 5;
	s->io.iov = &s->iov;
	s->io.iovcnt = 1;
	s->io.initiator = s->ini;
	s->io.done = fence_done;
	disk_submit(s->w->d, &s->io);
}

static void *fence_thread(void *arg)
{
	struct fence_worker *w = arg;
	struct disk_initiator a = host(fence_a_id);
	struct fence_slot slots[8];
	bool busy = true;

	tu_reactor();
	for (unsigned i = 0; i < ARRAY_SIZE(slots); i++) {
		slots[i].w = w;
		slots[i].ini = &a;
		fence_submit(&slots[i]);
	}
	while (busy) {
		/* Poll rather than block in io_uring_enter: valgrind holds its
		 * big lock across that call, which would starve the main thread. */
		if (reactor_run_once(tu_reactor(), false) == 0)
			nanosleep(&(struct timespec){ 0, 10 * 1000 }, NULL);
		busy = false;
		for (unsigned i = 0; i < ARRAY_SIZE(slots); i++)
			busy |= slots[i].ini != NULL;
	}
	tu_reactor_done();
	return NULL;
}

static void test_prwrap_abort_fences_writes(void **state)
{
	struct disk_info info = { .type = "fence", .sector_size = 512, .physical_sector_size = 512 };
	struct disk_initiator a = host(fence_a_id), b = host(2);

	(void)state;
	for (int round = 0; round < 20; round++) {
		struct fence_worker w = { 0 };
		struct async p;
		struct disk *lower;
		pthread_t t;
		unsigned long at_preempt;
		struct timespec ts = { 0, 1000 * 1000 };

		assert_int_equal(disk_new(&fence_ops, &info, NULL, NULL, &lower), 0);
		w.d = wrap(lower);
		assert_int_equal(reg(w.d, &a, 0xa), OK);
		assert_int_equal(reg(w.d, &b, 0xb), OK);
		assert_int_equal(reserve(w.d, &a, 0xa, WE_RO), OK);
		atomic_store(&fence_last_a_write, 0);
		atomic_store(&fence_a_landed, 0);
		assert_int_equal(pthread_create(&t, NULL, fence_thread, &w), 0);
		/* Preempt while a's writes stream (the machine may be busy:
		 * wait for them rather than for a fixed time). */
		for (int i = 0; i < 10000 && atomic_load(&fence_a_landed) < 32; i++)
			nanosleep(&ts, NULL);
		assert_true(atomic_load(&fence_a_landed) >= 32);
		/* Submit and poll (see fence_thread) instead of disk_sync_io. */
		async_preempt(w.d, &p, &b, 0xb, 0xa, WE_RO, true);
		while (!p.done) {
			if (reactor_run_once(tu_reactor(), false) == 0)
				nanosleep(&(struct timespec){ 0, 10 * 1000 }, NULL);
		}
		at_preempt = atomic_fetch_add(&fence_clock, 1) + 1;
		assert_int_equal(p.io.status, OK);
		nanosleep(&ts, NULL);
		atomic_store(&w.stop, true);
		pthread_join(t, NULL);
		/* Fencing: none of a's writes reached the disk after the
		 * PREEMPT AND ABORT completed. */
		if (atomic_load(&fence_last_a_write) > at_preempt)
			fail_msg("round %d: a write of the preempted host landed after the preempt",
				 round);
		assert_int_equal(w.other, 0);
		assert_true(w.ok > 0 || w.aborted > 0);
		disk_unref(w.d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prwrap_contract_ram_512_4096),
		cmocka_unit_test(test_prwrap_contract_spec),
		cmocka_unit_test(test_prwrap_forwarding),
		cmocka_unit_test(test_prwrap_anon_table),
		cmocka_unit_test(test_prwrap_anon_caps_and_io),
		cmocka_unit_test(test_prwrap_anon_and_identified_are_separate),
		cmocka_unit_test(test_prwrap_access_matrix),
		cmocka_unit_test(test_prwrap_identity),
		cmocka_unit_test(test_prwrap_register),
		cmocka_unit_test(test_prwrap_registration_limit),
		cmocka_unit_test(test_prwrap_reserve_release),
		cmocka_unit_test(test_prwrap_all_registrants),
		cmocka_unit_test(test_prwrap_clear),
		cmocka_unit_test(test_prwrap_preempt),
		cmocka_unit_test(test_prwrap_preempt_all_registrants),
		cmocka_unit_test(test_prwrap_preempt_and_abort),
		cmocka_unit_test(test_prwrap_abort_fences_writes),
	};

	tu_reactor();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
