/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-pr.c: PERSISTENT RESERVE IN/OUT of scsi/pr.c through the whole
 * core (scsitest.h), with two and three I_T nexuses over mem: and file:
 * disks (three nexuses: two initiators, the first with two ports).
 *
 * - Every service action, with the expectations of libiscsi's
 *   iscsi-test-cu PR suites: PR IN service actions 0-3 supported and the
 *   rest refused (PrinServiceactionRange), READ KEYS and its generation,
 *   REPORT CAPABILITIES, the access matrix of each type checked with READ
 *   and WRITE (the disk fences them), and ownership: a holder that
 *   unregisters gets no RESERVATIONS RELEASED unit attention itself.
 * - The unit attentions of RELEASE, CLEAR, PREEMPT and PREEMPT AND ABORT,
 *   REGISTER AND MOVE with its TransportID, READ FULL STATUS, the
 *   parameter list checks, SPC-4's conflict table for non-data commands.
 * - APTPL: the state persisted and restored across an LU re-creation
 *   over a file disk; no state file while APTPL is off; a corrupt state
 *   file stops scsi_lu_new with a clear message.
 * Expectations come from SPC-4 (§5.13, §6.15, §6.16), not from pr.c.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/reactor.h"
#include "scsi/internal.h"
#include "storage/spec.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define IQN1 "iqn.2024-01.org.example:init1"
#define IQN2 "iqn.2024-01.org.example:init2"

/* SPC-4 TYPE codes. */
enum { WE = 1, EA = 3, WE_RO = 5, EA_RO = 6, WE_AR = 7, EA_AR = 8 };
/* PR OUT service actions. */
enum { REGISTER = 0, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_ABORT, REGISTER_IGNORE, MOVE };

struct fix {
	const char *spec;               /* the disk */
	char state[512];                /* the APTPL state path ("" = none) */
	struct scsi_target *t;
	struct scsi_lu *lu;
	struct scsi_nexus *n[3];        /* init1 port 1, init2, init1 port 2 */
};

/* The fixture of the running test (rw() needs its LU). */
static struct fix *cur;

/* ---- helpers -------------------------------------------------------------------- */

static void fix_open(struct fix *f)
{
	struct scsi_lu_opts o = { .type = SCSI_LU_DISK };

	if (f->state[0])
		o.pr_state_path = f->state;
	f->t = st_target(NULL);
	f->lu = st_add_lu(f->t, 0, f->spec, &o);
	cur = f;
	f->n[0] = st_nexus(f->t, IQN1, 1);
	f->n[1] = st_nexus(f->t, IQN2, 2);
	f->n[2] = st_nexus(f->t, IQN1, 3);
	for (int i = 0; i < 3; i++)
		st_clear_ua(f->n[i], 0);
}

static void fix_close(struct fix *f)
{
	for (int i = 0; i < 3; i++)
		scsi_nexus_free(f->n[i]);
	scsi_target_free(f->t);
	f->t = NULL;
}

static int setup_mem(void **state)
{
	static struct fix f;

	memset(&f, 0, sizeof(f));
	f.spec = "mem:1M";
	fix_open(&f);
	*state = &f;
	return 0;
}

static int setup_file(void **state)
{
	static struct fix f;
	static char spec[600];

	memset(&f, 0, sizeof(f));
	snprintf(spec, sizeof(spec), "file:%s;create=1M", tu_path("pr-disk.img"));
	f.spec = spec;
	fix_open(&f);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	if (f->t)
		fix_close(f);
	return 0;
}

/* PR OUT @sa with a basic parameter list (@flags: byte 20). */
static uint8_t pr_out(struct scsi_nexus *n, uint8_t sa, uint8_t type, uint64_t key,
		      uint64_t sa_key, uint8_t flags, struct st_result *res)
{
	uint8_t cdb[10] = { 0x5f, sa, type };
	uint8_t p[24] = { 0 };

	ds_put_be32(cdb + 5, sizeof(p));
	ds_put_be64(p, key);
	ds_put_be64(p + 8, sa_key);
	p[20] = flags;
	return st_run(n, 0, cdb, sizeof(cdb), SCSI_DIR_OUT, p, sizeof(p), res);
}

static void register_ignore(struct scsi_nexus *n, uint64_t key)
{
	struct st_result r;

	assert_int_equal(pr_out(n, REGISTER_IGNORE, 0, 0, key, 0, &r), SCSI_GOOD);
}

/* PR IN @sa into @buf with allocation length @alloc. */
static uint8_t pr_in(struct scsi_nexus *n, uint8_t sa, void *buf, uint16_t alloc,
		     struct st_result *res)
{
	uint8_t cdb[10] = { 0x5e, sa };

	ds_put_be16(cdb + 7, alloc);
	return st_run(n, 0, cdb, sizeof(cdb), SCSI_DIR_IN, buf, alloc, res);
}

/* READ KEYS: the generation, and the keys into @keys (room 8). */
static unsigned read_keys(struct scsi_nexus *n, uint32_t *gen, uint64_t *keys)
{
	uint8_t b[8 + 8 * 8];
	struct st_result r;
	unsigned nk;

	assert_int_equal(pr_in(n, 0, b, sizeof(b), &r), SCSI_GOOD);
	nk = ds_get_be32(b + 4) / 8;
	assert_true(nk <= 8);
	if (gen)
		*gen = ds_get_be32(b);
	for (unsigned i = 0; keys && i < nk; i++)
		keys[i] = ds_get_be64(b + 8 + 8 * i);
	return nk;
}

/* READ RESERVATION: the type (0: none) and the key. */
static uint8_t read_res(struct scsi_nexus *n, uint64_t *key)
{
	uint8_t b[24];
	struct st_result r;

	memset(b, 0xaa, sizeof(b));
	if (pr_in(n, 1, b, sizeof(b), &r) != SCSI_GOOD)
		fail_msg("READ RESERVATION: %02x %x/%02x/%02x", r.status, r.key, r.asc, r.ascq);
	if (ds_get_be32(b + 4) == 0) {
		assert_int_equal(r.data_len, 8);
		return 0;
	}
	assert_int_equal(ds_get_be32(b + 4), 16);
	if (key)
		*key = ds_get_be64(b + 8);
	assert_int_equal(b[21] >> 4, 0);        /* LU_SCOPE */
	return b[21] & 0x0f;
}

/*
 * A read or write of sector 0 from @n the way SBC-3's READ and WRITE send
 * it: to the LU's I/O disk (scsi_pr_disk) with the nexus's identity. The
 * disk decides; RESERVATION CONFLICT is what the core makes of its
 * DISK_RESERVATION_CONFLICT.
 */
static uint8_t rw(struct scsi_nexus *n, bool write)
{
	uint8_t buf[512] = { 0 };
	struct iovec iov = { buf, sizeof(buf) };
	struct disk_io io = { .op = write ? DISK_OP_WRITE : DISK_OP_READ, .iov = &iov,
			      .iovcnt = 1, .initiator = scsi_nexus_disk_initiator(n) };
	int st;

	(void)tu_reactor();
	st = disk_sync_io(scsi_pr_disk(scsi_lu_pr(cur->lu)), &io);
	if (st == DISK_RESERVATION_CONFLICT)
		return SCSI_RESERVATION_CONFLICT;
	assert_int_equal(st, DISK_OK);
	return SCSI_GOOD;
}

/* The unit attention TEST UNIT READY reports to @n first (asc << 8 | ascq),
 * or 0; takes every pending one. */
static unsigned take_ua(struct scsi_nexus *n)
{
	static const uint8_t tur[6] = { 0 };
	unsigned first = 0;
	struct st_result r;

	while (st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r) == SCSI_CHECK_CONDITION &&
	       r.key == SCSI_SK_UNIT_ATTENTION) {
		if (!first)
			first = (unsigned)r.asc << 8 | r.ascq;
	}
	return first;
}

static bool all_regs(uint8_t type)
{
	return type == WE_AR || type == EA_AR;
}

/* ---- PR IN ---------------------------------------------------------------------- */

/* iscsi-test-cu PrinServiceactionRange: 0-3 work (tgt fails SA 3). */
static void test_scsi_pr_in_service_actions(void **state)
{
	struct fix *f = *state;
	uint8_t b[16384];
	struct st_result r;

	for (uint8_t sa = 0; sa < 4; sa++)
		assert_int_equal(pr_in(f->n[0], sa, b, sizeof(b), &r), SCSI_GOOD);
	for (uint8_t sa = 4; sa < 0x20; sa++) {
		assert_int_equal(pr_in(f->n[0], sa, b, sizeof(b), &r), SCSI_CHECK_CONDITION);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
}

/* READ KEYS: generation counting, and an allocation length that cuts
 * the data is no error (SPC-4 §4.2.5.6), down to 0. */
static void test_scsi_pr_read_keys(void **state)
{
	struct fix *f = *state;
	uint64_t keys[8];
	uint32_t g0, g;
	uint8_t b[32];
	struct st_result r;

	assert_int_equal(read_keys(f->n[0], &g0, NULL), 0);
	register_ignore(f->n[0], 0x1111);
	register_ignore(f->n[1], 0x2222);
	assert_int_equal(read_keys(f->n[2], &g, keys), 2);
	assert_int_equal(g, g0 + 2);
	assert_true((keys[0] == 0x1111 && keys[1] == 0x2222) ||
		    (keys[0] == 0x2222 && keys[1] == 0x1111));
	/* RESERVE and RELEASE leave the generation alone. */
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0x1111, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[0], RELEASE, WE, 0x1111, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[0], &g, NULL), 2);
	assert_int_equal(g, g0 + 2);

	memset(b, 0xaa, sizeof(b));
	assert_int_equal(pr_in(f->n[0], 0, b, 12, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 12);
	assert_int_equal(ds_get_be32(b + 4), 16);       /* the whole list's length */
	assert_int_equal(b[12], 0xaa);
	assert_int_equal(pr_in(f->n[0], 0, b, 0, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 0);
}

static void test_scsi_pr_report_capabilities(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];
	struct st_result r;

	assert_int_equal(pr_in(f->n[0], 2, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 8);
	assert_int_equal(ds_get_be16(b), 8);
	assert_int_equal(b[2] & 0x10, 0);               /* CRH 0 */
	assert_int_equal(b[2] & 0x08, 0);               /* SIP_C 0 */
	assert_int_equal(b[2] & 0x04, 0x04);            /* ATP_C 1 */
	assert_int_equal(b[2] & 0x01, 0);               /* PTPL_C: no state path */
	assert_int_equal(b[3] & 0x80, 0x80);            /* TMV */
	assert_true(((b[3] >> 4) & 7) <= 5);            /* ALLOW COMMANDS */
	assert_int_equal(b[3] & 0x01, 0);               /* PTPL_A */
	/* every type of SPC-4's mask: WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX, EX_AC_AR */
	assert_int_equal(ds_get_be16(b + 4), 0xea01);
}

/* READ FULL STATUS: one descriptor per registrant with its iSCSI
 * initiator port TransportID (format 01b), ALL_TG_PT and the holder. */
static void test_scsi_pr_read_full_status(void **state)
{
	struct fix *f = *state;
	uint8_t b[2048];
	char want[3][128];
	bool seen[3] = { false };
	size_t off = 8, end;
	struct st_result r;

	register_ignore(f->n[0], 0xa1);
	assert_int_equal(pr_out(f->n[1], REGISTER_IGNORE, 0, 0, 0xb2, 0x04, &r), SCSI_GOOD);
	register_ignore(f->n[2], 0xc3);
	assert_int_equal(pr_out(f->n[0], RESERVE, EA_RO, 0xa1, 0, 0, &r), SCSI_GOOD);
	snprintf(want[0], sizeof(want[0]), "%s,i,0x%012x", IQN1, 1);
	snprintf(want[1], sizeof(want[1]), "%s,i,0x%012x", IQN2, 2);
	snprintf(want[2], sizeof(want[2]), "%s,i,0x%012x", IQN1, 3);

	assert_int_equal(pr_in(f->n[1], 3, b, sizeof(b), &r), SCSI_GOOD);
	end = 8 + ds_get_be32(b + 4);
	assert_int_equal(end, r.data_len);
	while (off < end) {
		const uint8_t *d = b + off, *tid = d + 24;
		uint32_t tl = ds_get_be32(d + 20);
		uint64_t key = ds_get_be64(d);
		int who = key == 0xa1 ? 0 : key == 0xb2 ? 1 : key == 0xc3 ? 2 : -1;

		assert_true(who >= 0 && !seen[who]);
		seen[who] = true;
		assert_int_equal(d[12] & 0x01, who == 0);               /* R_HOLDER */
		assert_int_equal(d[12] & 0x02, who == 1 ? 0x02 : 0);    /* ALL_TG_PT */
		assert_int_equal(d[13], who == 0 ? EA_RO : 0);
		assert_int_equal(ds_get_be16(d + 18), 1);               /* relative target port */
		/* iSCSI TransportID, SPC-4 §7.6.4.6 */
		assert_int_equal(tid[0], 0x45);
		assert_int_equal(ds_get_be16(tid + 2) + 4, tl);
		assert_true(tl % 4 == 0 && tl >= 24);
		assert_string_equal((const char *)tid + 4, want[who]);
		off += 24 + tl;
	}
	assert_true(seen[0] && seen[1] && seen[2]);
	assert_int_equal(off, end);
}

/* ---- PR OUT ----------------------------------------------------------------------- */

/* REGISTER (SPC-4 §5.13, registering): keys must match, 0 unregisters. */
static void test_scsi_pr_register(void **state)
{
	struct fix *f = *state;
	uint64_t keys[8];
	struct st_result r;

	/* An unregistered nexus must send reservation key 0. */
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 5, 0x10, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(r.sense_len, 0);
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0, 0x10, 0, &r), SCSI_GOOD);
	/* Registered: the current key or conflict. */
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0x11, 0x20, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0x10, 0x20, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[1], NULL, keys), 1);
	assert_int_equal(keys[0], 0x20);
	/* REGISTER AND IGNORE EXISTING KEY replaces whatever is there. */
	assert_int_equal(pr_out(f->n[0], REGISTER_IGNORE, 0, 0x999, 0x30, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[1], NULL, keys), 1);
	assert_int_equal(keys[0], 0x30);
	/* Other service actions need the registered key. */
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0x31, 0, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(f->n[1], RESERVE, WE, 0, 0, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(f->n[1], CLEAR, 0, 0x30, 0, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0x30, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[1], NULL, NULL), 0);
}

/* Parameter list and CDB checks (SPC-4 §6.16). */
static void test_scsi_pr_out_checks(void **state)
{
	struct fix *f = *state;
	static const uint8_t bad_types[] = { 0x0, 0x2, 0x4, 0x9, 0xc, 0xf };
	uint8_t cdb[10] = { 0x5f, REGISTER_IGNORE };
	uint8_t p[32] = { 0 };
	struct st_result r;

	/* Length other than 24: PARAMETER LIST LENGTH ERROR. */
	ds_put_be64(p + 8, 0x42);
	for (uint32_t len = 23; len <= 25; len += 2) {
		ds_put_be32(cdb + 5, len);
		assert_int_equal(st_run(f->n[0], 0, cdb, 10, SCSI_DIR_OUT, p, len, &r),
				 SCSI_CHECK_CONDITION);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	}
	/* SPEC_I_PT is not supported (SIP_C 0). */
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0, 0x42, 0x08, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	/* APTPL without a state path (PTPL_C 0). */
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0, 0x42, 0x01, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	assert_int_equal(read_keys(f->n[0], NULL, NULL), 0);
	/* ...while the other service actions ignore it. */
	register_ignore(f->n[0], 0x42);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0x42, 0, 0x01, &r), SCSI_GOOD);
	/* Types that are not SPC-4's, and scopes other than LU_SCOPE. */
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		for (uint8_t sa = RESERVE; sa <= PREEMPT_ABORT; sa++) {
			if (sa == CLEAR)
				continue;
			assert_int_equal(pr_out(f->n[0], sa, bad_types[i], 0x42, 0x42, 0, &r),
					 SCSI_CHECK_CONDITION);
			st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		}
	}
	assert_int_equal(pr_out(f->n[0], RESERVE, 0x10 | WE, 0x42, 0, 0, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* REPLACE LOST RESERVATION and reserved service actions */
	for (uint8_t sa = 8; sa < 0x20; sa++) {
		assert_int_equal(pr_out(f->n[0], sa, 0, 0x42, 0, 0, &r), SCSI_CHECK_CONDITION);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	/* The holder releasing with another type: INVALID RELEASE OF
	 * PERSISTENT RESERVATION. */
	assert_int_equal(pr_out(f->n[0], RELEASE, EA, 0x42, 0, 0, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x04);
	/* RESERVE of another type while reserved conflicts, the same type is fine. */
	assert_int_equal(pr_out(f->n[0], RESERVE, EA, 0x42, 0, 0, &r), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0x42, 0, 0, &r), SCSI_GOOD);
	/* A non-holder releasing: GOOD, nothing changes. */
	register_ignore(f->n[1], 0x43);
	assert_int_equal(pr_out(f->n[1], RELEASE, WE, 0x43, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(read_res(f->n[1], NULL), WE);
	/* CLEAR ignores the type. */
	assert_int_equal(pr_out(f->n[0], CLEAR, 0xf, 0x42, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(take_ua(f->n[1]), 0x2a03);
	assert_int_equal(read_res(f->n[1], NULL), 0);
}

/*
 * iscsi-test-cu ProutReserve.Access*: the holder (nexus 0) reads and
 * writes; a registered and then an unregistered other initiator reads
 * and writes as the type says. READ and WRITE reach the disk, which
 * fences them. Row: type, registered read/write, unregistered read/write.
 */
static const struct access_row {
	uint8_t type;
	bool reg_read, reg_write, unreg_read, unreg_write;
} access_rows[] = {
	{ EA, false, false, false, false },
	{ WE, true, false, true, false },
	{ EA_RO, true, true, false, false },
	{ WE_RO, true, true, true, false },
	{ EA_AR, true, true, false, false },
	{ WE_AR, true, true, true, false },
};

static uint8_t st_ok(bool ok)
{
	return ok ? SCSI_GOOD : SCSI_RESERVATION_CONFLICT;
}

static void test_scsi_pr_access(void **state)
{
	struct fix *f = *state;
	struct st_result r;

	for (size_t i = 0; i < ARRAY_SIZE(access_rows); i++) {
		const struct access_row *a = &access_rows[i];
		uint64_t key = 0;

		register_ignore(f->n[0], 0x1000 + i);
		register_ignore(f->n[1], 0x2000 + i);
		assert_int_equal(pr_out(f->n[0], RESERVE, a->type, 0x1000 + i, 0, 0, &r), SCSI_GOOD);
		assert_int_equal(read_res(f->n[1], &key), a->type);
		assert_int_equal(key, all_regs(a->type) ? 0 : 0x1000 + i);
		assert_int_equal(rw(f->n[0], false), SCSI_GOOD);
		assert_int_equal(rw(f->n[0], true), SCSI_GOOD);
		assert_int_equal(rw(f->n[1], false), st_ok(a->reg_read));
		assert_int_equal(rw(f->n[1], true), st_ok(a->reg_write));
		assert_int_equal(pr_out(f->n[1], REGISTER, 0, 0x2000 + i, 0, 0, &r), SCSI_GOOD);
		assert_int_equal(rw(f->n[1], false), st_ok(a->unreg_read));
		assert_int_equal(rw(f->n[1], true), st_ok(a->unreg_write));
		/* The other port of the first initiator is a nexus of its own. */
		assert_int_equal(rw(f->n[2], true), SCSI_RESERVATION_CONFLICT);
		assert_int_equal(pr_out(f->n[0], RELEASE, a->type, 0x1000 + i, 0, 0, &r), SCSI_GOOD);
		assert_int_equal(rw(f->n[1], true), SCSI_GOOD);
		assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0x1000 + i, 0, 0, &r), SCSI_GOOD);
		(void)take_ua(f->n[1]);
	}
}

/*
 * iscsi-test-cu ProutReserve.Ownership*: the holder unregisters; the
 * reservation goes with it unless it is an all-registrants one; the
 * holder's next command is GOOD (tgt reported 2Ah/04h to it); the other
 * registrant hears RESERVATIONS RELEASED for a registrants-only type.
 */
static void test_scsi_pr_ownership(void **state)
{
	struct fix *f = *state;
	static const uint8_t types[] = { EA, WE, EA_RO, WE_RO, EA_AR, WE_AR };
	struct st_result r;
	uint8_t b[64];

	for (size_t i = 0; i < sizeof(types); i++) {
		uint8_t t = types[i];
		uint64_t key = 1;

		register_ignore(f->n[0], 0x71);
		register_ignore(f->n[1], 0x72);
		assert_int_equal(pr_out(f->n[0], RESERVE, t, 0x71, 0, 0, &r), SCSI_GOOD);
		assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0x71, 0, 0, &r), SCSI_GOOD);
		/* No unit attention for the nexus that caused the release. */
		assert_int_equal(pr_in(f->n[0], 1, b, sizeof(b), &r), SCSI_GOOD);
		if (all_regs(t)) {
			assert_int_equal(read_res(f->n[0], &key), t);
			assert_int_equal(key, 0);
			assert_int_equal(take_ua(f->n[1]), 0);
			assert_int_equal(pr_out(f->n[1], RELEASE, t, 0x72, 0, 0, &r), SCSI_GOOD);
		} else {
			assert_int_equal(read_res(f->n[0], NULL), 0);
			assert_int_equal(take_ua(f->n[1]), t == EA_RO || t == WE_RO ? 0x2a04 : 0);
		}
		assert_int_equal(take_ua(f->n[0]), 0);
		assert_int_equal(pr_out(f->n[1], REGISTER, 0, 0x72, 0, 0, &r), SCSI_GOOD);
	}
}

/* RELEASE of a registrants-only or all-registrants reservation tells the
 * other registrants, not the releaser nor unregistered nexuses. */
static void test_scsi_pr_release_ua(void **state)
{
	struct fix *f = *state;
	static const uint8_t types[] = { WE, EA, WE_RO, EA_RO, WE_AR, EA_AR };
	struct st_result r;

	for (size_t i = 0; i < sizeof(types); i++) {
		uint8_t t = types[i];
		bool told = t != WE && t != EA;

		register_ignore(f->n[0], 0x51);
		register_ignore(f->n[1], 0x52);
		assert_int_equal(pr_out(f->n[0], RESERVE, t, 0x51, 0, 0, &r), SCSI_GOOD);
		/* Any registrant of an all-registrants type holds it. */
		assert_int_equal(pr_out(all_regs(t) ? f->n[1] : f->n[0], RELEASE, t,
					all_regs(t) ? 0x52 : 0x51, 0, 0, &r), SCSI_GOOD);
		assert_int_equal(read_res(f->n[2], NULL), 0);
		if (all_regs(t)) {
			assert_int_equal(take_ua(f->n[0]), 0x2a04);
			assert_int_equal(take_ua(f->n[1]), 0);
		} else {
			assert_int_equal(take_ua(f->n[1]), told ? 0x2a04 : 0);
			assert_int_equal(take_ua(f->n[0]), 0);
		}
		assert_int_equal(take_ua(f->n[2]), 0);
		assert_int_equal(pr_out(f->n[0], CLEAR, 0, 0x51, 0, 0, &r), SCSI_GOOD);
		(void)take_ua(f->n[1]);
	}
}

/* iscsi-test-cu ProutClear: CLEAR removes every registration and the
 * reservation; the others hear RESERVATIONS PREEMPTED. */
static void test_scsi_pr_clear(void **state)
{
	struct fix *f = *state;
	struct st_result r;
	uint32_t g0, g;

	register_ignore(f->n[0], 0x61);
	register_ignore(f->n[1], 0x62);
	register_ignore(f->n[2], 0x63);
	assert_int_equal(pr_out(f->n[1], RESERVE, EA, 0x62, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[0], &g0, NULL), 3);
	assert_int_equal(pr_out(f->n[0], CLEAR, 0, 0x61, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[0], &g, NULL), 0);
	assert_int_equal(g, g0 + 1);
	assert_int_equal(read_res(f->n[0], NULL), 0);
	assert_int_equal(take_ua(f->n[0]), 0);
	assert_int_equal(take_ua(f->n[1]), 0x2a03);
	assert_int_equal(take_ua(f->n[2]), 0x2a03);
	assert_int_equal(rw(f->n[2], true), SCSI_GOOD);
}

/* iscsi-test-cu ProutPreempt.RemoveRegistration: with no reservation,
 * PREEMPT removes the registrations of the key (generation + 1); the
 * removed registrant hears REGISTRATIONS PREEMPTED. */
static void test_scsi_pr_preempt_registration(void **state)
{
	struct fix *f = *state;
	uint64_t keys[8];
	struct st_result r;
	uint32_t g0, g;

	register_ignore(f->n[0], 0x81);
	register_ignore(f->n[1], 0x82);
	assert_int_equal(read_keys(f->n[0], &g0, NULL), 2);
	assert_int_equal(pr_out(f->n[1], PREEMPT, EA, 0x82, 0x81, 0, &r), SCSI_GOOD);
	assert_int_equal(take_ua(f->n[0]), 0x2a05);
	assert_int_equal(read_keys(f->n[0], &g, keys), 1);
	assert_int_equal(g, g0 + 1);
	assert_int_equal(keys[0], 0x82);
	assert_int_equal(read_res(f->n[0], NULL), 0);
	assert_int_equal(take_ua(f->n[1]), 0);
	/* Preempting a key nobody has: RESERVATION CONFLICT. */
	assert_int_equal(pr_out(f->n[1], PREEMPT, EA, 0x82, 0x99, 0, &r), SCSI_RESERVATION_CONFLICT);
}

/* PREEMPT of the holder: its registration goes, the preempting nexus
 * holds a reservation of the new type; a third registrant that stays
 * hears RESERVATIONS RELEASED because the type changed. */
static void test_scsi_pr_preempt_holder(void **state)
{
	struct fix *f = *state;
	struct st_result r;
	uint64_t key;

	register_ignore(f->n[0], 0x91);
	register_ignore(f->n[1], 0x92);
	register_ignore(f->n[2], 0x93);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE_RO, 0x91, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[1], PREEMPT, EA_RO, 0x92, 0x91, 0, &r), SCSI_GOOD);
	assert_int_equal(read_res(f->n[1], &key), EA_RO);
	assert_int_equal(key, 0x92);
	assert_int_equal(read_keys(f->n[1], NULL, NULL), 2);
	assert_int_equal(take_ua(f->n[0]), 0x2a05);
	assert_int_equal(take_ua(f->n[1]), 0);
	assert_int_equal(take_ua(f->n[2]), 0x2a04);
	/* The preempted initiator port is now a stranger under EA_RO. */
	assert_int_equal(rw(f->n[0], false), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(rw(f->n[2], false), SCSI_GOOD);
	/* Same type: no RESERVATIONS RELEASED for those who stay. */
	register_ignore(f->n[0], 0x94);
	assert_int_equal(pr_out(f->n[0], PREEMPT, EA_RO, 0x94, 0x92, 0, &r), SCSI_GOOD);
	assert_int_equal(take_ua(f->n[1]), 0x2a05);
	assert_int_equal(take_ua(f->n[2]), 0);
}

/* PREEMPT AND ABORT: as PREEMPT, and the preempted nexus's I/O is
 * refused from then on (the disk aborts what it had in flight). */
static void test_scsi_pr_preempt_and_abort(void **state)
{
	struct fix *f = *state;
	struct st_result r;
	uint32_t g0, g;
	uint64_t key;

	register_ignore(f->n[0], 0xa1);
	register_ignore(f->n[1], 0xa2);
	assert_int_equal(pr_out(f->n[0], RESERVE, EA, 0xa1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(rw(f->n[1], false), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(read_keys(f->n[0], &g0, NULL), 2);
	assert_int_equal(pr_out(f->n[1], PREEMPT_ABORT, EA, 0xa2, 0xa1, 0, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[1], &g, NULL), 1);
	assert_int_equal(g, g0 + 1);
	assert_int_equal(read_res(f->n[1], &key), EA);
	assert_int_equal(key, 0xa2);
	assert_int_equal(take_ua(f->n[0]), 0x2a05);
	assert_int_equal(rw(f->n[0], true), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(rw(f->n[1], true), SCSI_GOOD);
	/* A preempt key of 0 on a reservation that is not all-registrants. */
	assert_int_equal(pr_out(f->n[1], PREEMPT_ABORT, EA, 0xa2, 0, 0, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
}

/* REGISTER AND MOVE with an iSCSI TransportID. */
static uint8_t pr_move(struct scsi_nexus *n, uint64_t key, uint64_t sa_key, bool unreg,
		       uint16_t rtp, const char *port, uint8_t fmt, struct st_result *res)
{
	uint8_t cdb[10] = { 0x5f, MOVE };
	uint8_t p[24 + 260] = { 0 };
	size_t sl = strlen(port) + 1, tl = MAX(ROUND_UP(sl, 4), (size_t)20) + 4;

	ds_put_be64(p, key);
	ds_put_be64(p + 8, sa_key);
	p[17] = unreg ? 0x02 : 0;
	ds_put_be16(p + 18, rtp);
	ds_put_be32(p + 20, (uint32_t)tl);
	p[24] = (uint8_t)(fmt << 6 | 0x05);
	ds_put_be16(p + 26, (uint16_t)(tl - 4));
	memcpy(p + 28, port, sl);
	ds_put_be32(cdb + 5, (uint32_t)(24 + tl));
	return st_run(n, 0, cdb, 10, SCSI_DIR_OUT, p, 24 + tl, res);
}

static void test_scsi_pr_register_and_move(void **state)
{
	struct fix *f = *state;
	char port1[128], port2[128], port3[128];
	uint64_t keys[8], key;
	struct st_result r;
	uint32_t g0, g;

	snprintf(port1, sizeof(port1), "%s,i,0x%012x", IQN1, 1);
	snprintf(port2, sizeof(port2), "%s,i,0x%012x", IQN2, 2);
	snprintf(port3, sizeof(port3), "%s,i,0x%012x", IQN1, 3);
	register_ignore(f->n[0], 0xb1);
	register_ignore(f->n[2], 0xb1);         /* shares the holder's key */
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0xb1, 0, 0, &r), SCSI_GOOD);

	/* Refused: not the holder, to itself, bad relative port, key 0, a
	 * TransportID length that disagrees with the list. */
	assert_int_equal(pr_move(f->n[2], 0xb1, 0xb2, false, 1, port2, 1, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_move(f->n[0], 0xb0, 0xb2, false, 1, port2, 1, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(pr_move(f->n[0], 0xb1, 0xb2, false, 1, port1, 1, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	assert_int_equal(pr_move(f->n[0], 0xb1, 0xb2, false, 2, port2, 1, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	assert_int_equal(pr_move(f->n[0], 0xb1, 0, false, 1, port2, 1, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	/* A name-only TransportID of a port nobody registered. */
	assert_int_equal(pr_move(f->n[0], 0xb1, 0xb2, false, 1, IQN2, 0, &r), SCSI_CHECK_CONDITION);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);

	/* To an unregistered port (format 01b), keeping the source registered. */
	assert_int_equal(read_keys(f->n[0], &g0, NULL), 2);
	assert_int_equal(pr_move(f->n[0], 0xb1, 0xb2, false, 1, port2, 1, &r), SCSI_GOOD);
	assert_int_equal(read_res(f->n[0], &key), WE);
	assert_int_equal(key, 0xb2);
	assert_int_equal(read_keys(f->n[0], &g, keys), 3);
	assert_int_equal(g, g0 + 1);
	assert_int_equal(rw(f->n[1], true), SCSI_GOOD);
	assert_int_equal(rw(f->n[0], true), SCSI_RESERVATION_CONFLICT);
	assert_int_equal(rw(f->n[2], true), SCSI_RESERVATION_CONFLICT);
	/* The source's and the third nexus's registrations stayed. */
	assert_int_equal(pr_out(f->n[0], REGISTER, 0, 0xb1, 0xb1, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[2], REGISTER, 0, 0xb1, 0xb1, 0, &r), SCSI_GOOD);

	/* Back, with UNREG, to a registered port named by name only. */
	assert_int_equal(pr_out(f->n[2], REGISTER, 0, 0xb1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_move(f->n[1], 0xb2, 0xc1, true, 1, IQN1, 0, &r), SCSI_GOOD);
	assert_int_equal(read_res(f->n[1], &key), WE);
	assert_int_equal(key, 0xc1);
	assert_int_equal(read_keys(f->n[1], NULL, keys), 1);
	assert_int_equal(keys[0], 0xc1);
	assert_int_equal(rw(f->n[0], true), SCSI_GOOD);
	assert_int_equal(rw(f->n[1], true), SCSI_RESERVATION_CONFLICT);
	(void)port3;

	/* An all-registrants reservation has no one holder to move. */
	assert_int_equal(pr_out(f->n[0], RELEASE, WE, 0xc1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE_AR, 0xc1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_move(f->n[0], 0xc1, 0xb2, false, 1, port2, 1, &r),
			 SCSI_RESERVATION_CONFLICT);
}

/* SPC-4 §5.13.1: commands that never reach the disk, under a
 * reservation another nexus holds (what the core asks scsi_pr_conflicts
 * before it runs them). */
static bool conflicts(struct scsi_nexus *n, const uint8_t *cdb)
{
	return scsi_pr_conflicts(scsi_lu_pr(cur->lu), n, cdb);
}

static void test_scsi_pr_conflicts_non_data(void **state)
{
	struct fix *f = *state;
	static const uint8_t tur[6] = { 0x00 };
	static const uint8_t inquiry[6] = { 0x12, 0, 0, 0, 96, 0 };
	static const uint8_t mode_sense[6] = { 0x1a, 0x08, 0x3f, 0, 255, 0 };
	static const uint8_t mode_select[6] = { 0x15, 0x10, 0, 0, 4, 0 };
	static const uint8_t reserve6[6] = { 0x16 };
	static const uint8_t release6[6] = { 0x17 };
	static const uint8_t read_cap[10] = { 0x25 };
	static const uint8_t read10[10] = { 0x28 };
	static const uint8_t pr_in_cdb[10] = { 0x5e };
	static const uint8_t start[6] = { 0x1b, 0, 0, 0, 0x01, 0 };
	static const uint8_t stop[6] = { 0x1b, 0, 0, 0, 0x00, 0 };
	static const uint8_t prevent[6] = { 0x1e, 0, 0, 0, 0x01, 0 };
	static const uint8_t allow[6] = { 0x1e, 0, 0, 0, 0x00, 0 };
	uint8_t b[255];
	struct st_result r;

	/* Nothing registered: nothing conflicts. */
	assert_false(conflicts(f->n[1], mode_select));
	assert_false(conflicts(f->n[1], reserve6));
	/* CRH 0 (SPC-4 §5.13.3): once anybody is registered, SPC-2 RESERVE
	 * and RELEASE conflict for every nexus. */
	register_ignore(f->n[0], 0xd1);
	assert_true(conflicts(f->n[0], reserve6));
	assert_true(conflicts(f->n[1], release6));

	/* Exclusive access: reading the LU's state conflicts too. */
	assert_int_equal(pr_out(f->n[0], RESERVE, EA, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_false(conflicts(f->n[1], tur));
	assert_false(conflicts(f->n[1], inquiry));
	assert_false(conflicts(f->n[1], read_cap));
	assert_false(conflicts(f->n[1], pr_in_cdb));
	assert_false(conflicts(f->n[1], read10));       /* the disk checks data I/O */
	assert_false(conflicts(f->n[1], start));
	assert_false(conflicts(f->n[1], allow));
	assert_true(conflicts(f->n[1], mode_sense));
	assert_true(conflicts(f->n[1], mode_select));
	assert_true(conflicts(f->n[1], stop));
	assert_true(conflicts(f->n[1], prevent));
	assert_false(conflicts(f->n[0], mode_sense));
	assert_false(conflicts(f->n[0], mode_select));
	/* Through the core: RESERVATION CONFLICT without sense, while TUR
	 * and INQUIRY still answer. */
	assert_int_equal(st_run(f->n[1], 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(st_run(f->n[1], 0, inquiry, 6, SCSI_DIR_IN, b, 96, &r), SCSI_GOOD);
	assert_int_equal(st_run(f->n[1], 0, mode_sense, 6, SCSI_DIR_IN, b, sizeof(b), &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(r.sense_len, 0);
	assert_int_equal(st_run(f->n[0], 0, mode_sense, 6, SCSI_DIR_IN, b, sizeof(b), &r),
			 SCSI_GOOD);
	assert_int_equal(st_run(f->n[1], 0, reserve6, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(st_run(f->n[0], 0, reserve6, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);

	/* Write exclusive: reading state is allowed, changing it is not. */
	assert_int_equal(pr_out(f->n[0], RELEASE, EA, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_false(conflicts(f->n[1], mode_sense));
	assert_true(conflicts(f->n[1], mode_select));

	/* Registrants only: a registrant may do both, a stranger neither. */
	assert_int_equal(pr_out(f->n[0], RELEASE, WE, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[0], RESERVE, EA_RO, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_true(conflicts(f->n[1], mode_sense));
	register_ignore(f->n[1], 0xd2);
	assert_false(conflicts(f->n[1], mode_sense));
	assert_false(conflicts(f->n[1], mode_select));
	assert_true(conflicts(f->n[2], mode_select));
	assert_true(conflicts(f->n[2], mode_sense));
	/* All registrants, write exclusive: strangers may read state. */
	assert_int_equal(pr_out(f->n[0], RELEASE, EA_RO, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[0], RESERVE, WE_AR, 0xd1, 0, 0, &r), SCSI_GOOD);
	assert_false(conflicts(f->n[1], mode_select));
	assert_false(conflicts(f->n[2], mode_sense));
	assert_true(conflicts(f->n[2], mode_select));
}

/* PR commands from several nexuses at once run one at a time, in order. */
static unsigned q_count;
static int q_order[4];
static bool q_all;

static void q_done(struct scsi_cmd *cmd)
{
	q_order[q_count++] = *(int *)cmd->opaque;
	q_all = q_count == 4;
}

static void test_scsi_pr_queued(void **state)
{
	struct fix *f = *state;
	static int idx[4] = { 0, 1, 2, 3 };
	uint8_t p[3][24], keys[64];
	struct iovec iov[4];
	struct scsi_cmd cmd[4];

	memset(cmd, 0, sizeof(cmd));
	memset(p, 0, sizeof(p));
	q_count = 0;
	q_all = false;
	for (int i = 0; i < 4; i++) {
		bool in = i == 3;

		cmd[i].nexus = f->n[i % 3];
		cmd[i].lun = scsi_lun_encode(0);
		cmd[i].cdb_len = 10;
		cmd[i].cdb[0] = in ? 0x5e : 0x5f;
		cmd[i].cdb[1] = in ? 0 : REGISTER_IGNORE;
		if (in) {
			ds_put_be16(cmd[i].cdb + 7, sizeof(keys));
			iov[i] = (struct iovec){ keys, sizeof(keys) };
		} else {
			ds_put_be32(cmd[i].cdb + 5, 24);
			ds_put_be64(p[i] + 8, 0xe0 + (uint64_t)i);
			iov[i] = (struct iovec){ p[i], 24 };
		}
		cmd[i].dir = in ? SCSI_DIR_IN : SCSI_DIR_OUT;
		cmd[i].iov = &iov[i];
		cmd[i].iovcnt = 1;
		cmd[i].xfer_len = (uint32_t)iov[i].iov_len;
		cmd[i].done = q_done;
		cmd[i].opaque = &idx[i];
	}
	for (int i = 0; i < 4; i++)
		scsi_cmd_submit(&cmd[i]);
	assert_int_equal(reactor_run_until(tu_reactor(), &q_all), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(q_order[i], i);
		assert_int_equal(cmd[i].status, SCSI_GOOD);
	}
	/* The READ KEYS queued last saw the three registrations. */
	assert_int_equal(ds_get_be32(keys + 4), 24);
}

/* ---- APTPL ------------------------------------------------------------------------- */

static bool file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* The state survives an LU re-created over the same file disk: keys,
 * holder, type, generation, TransportIDs, and the fencing. */
static void test_scsi_pr_aptpl_restore(void **state)
{
	struct fix *f = *state;
	char spec[600];
	uint8_t b[2048];
	uint64_t keys[8], key;
	struct st_result r;
	uint32_t g0, g;

	fix_close(f);
	snprintf(spec, sizeof(spec), "file:%s", tu_path("pr-aptpl.img"));
	{
		char create[700];

		snprintf(create, sizeof(create), "%s;create=1M", spec);
		f->spec = create;
		snprintf(f->state, sizeof(f->state), "%s", tu_path("pr-aptpl.img.pr"));
		unlink(f->state);
		fix_open(f);
	}
	assert_int_equal(pr_in(f->n[0], 2, b, 8, &r), SCSI_GOOD);
	assert_int_equal(b[2] & 0x01, 0x01);            /* PTPL_C */
	assert_int_equal(b[3] & 0x01, 0);               /* not yet activated */
	register_ignore(f->n[0], 0x1);
	assert_false(file_exists(f->state));
	assert_int_equal(pr_out(f->n[1], REGISTER_IGNORE, 0, 0, 0x2, 0x01, &r), SCSI_GOOD);
	assert_true(file_exists(f->state));
	assert_int_equal(pr_out(f->n[0], RESERVE, WE_RO, 0x1, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_in(f->n[0], 2, b, 8, &r), SCSI_GOOD);
	assert_int_equal(b[3] & 0x01, 0x01);            /* PTPL_A */
	assert_int_equal(read_keys(f->n[0], &g0, NULL), 2);
	fix_close(f);

	f->spec = spec;
	fix_open(f);
	assert_int_equal(read_keys(f->n[2], &g, keys), 2);
	assert_int_equal(g, g0);
	assert_true((keys[0] == 1 && keys[1] == 2) || (keys[0] == 2 && keys[1] == 1));
	assert_int_equal(read_res(f->n[2], &key), WE_RO);
	assert_int_equal(key, 1);
	assert_int_equal(pr_in(f->n[2], 2, b, 8, &r), SCSI_GOOD);
	assert_int_equal(b[3] & 0x01, 0x01);
	/* The holder and the registrant write, the third port does not. */
	assert_int_equal(rw(f->n[0], true), SCSI_GOOD);
	assert_int_equal(rw(f->n[1], true), SCSI_GOOD);
	assert_int_equal(rw(f->n[2], true), SCSI_RESERVATION_CONFLICT);
	/* TransportIDs came back too. */
	assert_int_equal(pr_in(f->n[2], 3, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[8 + 24], 0x45);
	assert_non_null(strstr((const char *)b + 8 + 28, ",i,0x"));
	/* The generation goes on from the saved value. */
	assert_int_equal(pr_out(f->n[1], REGISTER, 0, 0x2, 0x3, 0x01, &r), SCSI_GOOD);
	assert_int_equal(read_keys(f->n[2], &g, NULL), 2);
	assert_int_equal(g, g0 + 1);
	/* APTPL=0 takes the file away. */
	assert_int_equal(pr_out(f->n[1], REGISTER, 0, 0x3, 0x3, 0x00, &r), SCSI_GOOD);
	assert_false(file_exists(f->state));
	fix_close(f);
	fix_open(f);
	assert_int_equal(read_keys(f->n[0], NULL, NULL), 0);
	assert_int_equal(read_res(f->n[0], NULL), 0);
}

/* With a state path but APTPL never set, nothing is written. */
static void test_scsi_pr_no_file_without_aptpl(void **state)
{
	struct fix *f = *state;
	struct st_result r;

	fix_close(f);
	snprintf(f->state, sizeof(f->state), "%s", tu_path("pr-noaptpl.pr"));
	unlink(f->state);
	fix_open(f);
	register_ignore(f->n[0], 0x5);
	register_ignore(f->n[1], 0x6);
	assert_int_equal(pr_out(f->n[0], RESERVE, EA, 0x5, 0, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[1], PREEMPT, EA, 0x6, 0x5, 0, &r), SCSI_GOOD);
	assert_int_equal(pr_out(f->n[1], CLEAR, 0, 0x6, 0, 0, &r), SCSI_GOOD);
	assert_false(file_exists(f->state));
	assert_false(file_exists(tu_path("pr-noaptpl.pr.tmp")));
}

/* A damaged state file stops the LU with a message that names it. */
static void test_scsi_pr_corrupt_state(void **state)
{
	static const char *const bad[] = {
		"garbage\n",
		"diskstack-pr-state 1\ngeneration 3\ntype 0\n",        /* no end */
		"diskstack-pr-state 1\ngeneration 3\ntype 1\nend 0\n", /* reserved, nobody */
		"diskstack-pr-state 1\ngeneration 3\ntype 0\n"
		"reg 00zz 0000000000000001 0 5 0 1 -\nend 1\n",
		"diskstack-pr-state 1\ngeneration 3\ntype 0\n"
		"reg 0011 0000000000000001 0 5 0 1 -\nend 2\n",
		"diskstack-pr-state 1\ngeneration 3\ntype 0\n"
		"reg 0011 0000000000000001 0 5 0 1 -\nend 1\ntrailing\n",
	};
	const char *path = tu_path("pr-corrupt.pr");
	struct scsi_lu_opts o = { .type = SCSI_LU_DISK, .pr_state_path = path };
	struct disk *d = NULL;
	char err[512];

	(void)state;
	assert_int_equal(spec_open_str("mem:1M", false, NULL, &d, err, sizeof(err)), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct scsi_lu *lu = NULL;
		FILE *fp = fopen(path, "w");

		assert_non_null(fp);
		fputs(bad[i], fp);
		fclose(fp);
		err[0] = '\0';
		assert_int_equal(scsi_lu_new(d, &o, &lu, err, sizeof(err)), -EINVAL);
		assert_null(lu);
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "corrupt"));
	}
	/* A good one loads. */
	{
		struct scsi_lu *lu = NULL;
		FILE *fp = fopen(path, "w");

		assert_non_null(fp);
		fputs("diskstack-pr-state 1\ngeneration 3\ntype 0\n"
		      "reg 0011 0000000000000001 0 5 0 1 -\nend 1\n", fp);
		fclose(fp);
		assert_int_equal(scsi_lu_new(d, &o, &lu, err, sizeof(err)), 0);
		scsi_lu_free(lu);
	}
	unlink(path);
	disk_unref(d);
}

/* REGISTER AND MOVE finds a port's host id the way the core names nexuses. */
static void test_scsi_pr_port_host_id(void **state)
{
	struct fix *f = *state;

	for (int i = 0; i < 3; i++) {
		struct disk_initiator ini;

		assert_int_equal(scsi_port_disk_initiator(scsi_nexus_id(f->n[i])->protocol,
							  scsi_nexus_id(f->n[i])->port, &ini), 0);
		assert_int_equal(ini.host_id_len, scsi_nexus_disk_initiator(f->n[i])->host_id_len);
		assert_memory_equal(ini.host_id, scsi_nexus_disk_initiator(f->n[i])->host_id,
				    ini.host_id_len);
	}
}

int main(void)
{
#define MEM(t) cmocka_unit_test_setup_teardown(t, setup_mem, teardown)
#define FILE_(t) cmocka_unit_test_setup_teardown(t, setup_file, teardown)
	const struct CMUnitTest tests[] = {
		MEM(test_scsi_pr_in_service_actions),
		MEM(test_scsi_pr_read_keys),
		MEM(test_scsi_pr_report_capabilities),
		MEM(test_scsi_pr_read_full_status),
		MEM(test_scsi_pr_register),
		MEM(test_scsi_pr_out_checks),
		MEM(test_scsi_pr_access),
		FILE_(test_scsi_pr_access),
		MEM(test_scsi_pr_ownership),
		FILE_(test_scsi_pr_ownership),
		MEM(test_scsi_pr_release_ua),
		MEM(test_scsi_pr_clear),
		MEM(test_scsi_pr_preempt_registration),
		MEM(test_scsi_pr_preempt_holder),
		MEM(test_scsi_pr_preempt_and_abort),
		FILE_(test_scsi_pr_preempt_and_abort),
		MEM(test_scsi_pr_register_and_move),
		MEM(test_scsi_pr_conflicts_non_data),
		MEM(test_scsi_pr_queued),
		FILE_(test_scsi_pr_aptpl_restore),
		FILE_(test_scsi_pr_no_file_without_aptpl),
		cmocka_unit_test(test_scsi_pr_corrupt_state),
		MEM(test_scsi_pr_port_host_id),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	tu_reactor_done();
	return r;
}
