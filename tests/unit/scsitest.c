/* SPDX-License-Identifier: MIT */
/*
 * scsitest.c: helpers for the SCSI core's unit tests (see scsitest.h).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/reactor.h"
#include "storage/spec.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

struct scsi_target *st_target(const char *name)
{
	struct scsi_target *t = NULL;
	int r = scsi_target_new(name ? name : "iqn.2024-01.org.example:test", &t);

	if (r < 0)
		fail_msg("scsi_target_new: %s", strerror(-r));
	return t;
}

struct scsi_lu *st_add_disk(struct scsi_target *t, unsigned lun, struct disk *d,
			    const struct scsi_lu_opts *o)
{
	struct scsi_lu *lu = NULL;
	char err[256] = "";
	int r = scsi_lu_new(d, o, &lu, err, sizeof(err));

	if (r < 0)
		fail_msg("scsi_lu_new: %s (%s)", err, strerror(-r));
	r = scsi_target_add_lu(t, lun, lu);
	if (r < 0)
		fail_msg("scsi_target_add_lu(%u): %s", lun, strerror(-r));
	return lu;
}

struct scsi_lu *st_add_lu(struct scsi_target *t, unsigned lun, const char *spec,
			  const struct scsi_lu_opts *o)
{
	struct disk *d = NULL;
	struct scsi_lu *lu;
	char err[256] = "";
	int r = spec_open_str(spec, false, NULL, &d, err, sizeof(err));

	if (r < 0)
		fail_msg("spec_open_str(%s): %s", spec, err);
	lu = st_add_disk(t, lun, d, o);
	disk_unref(d);
	return lu;
}

struct scsi_nexus *st_nexus(struct scsi_target *t, const char *name, uint64_t isid)
{
	struct scsi_initiator_id id;
	struct scsi_nexus *n = NULL;
	int r;

	memset(&id, 0, sizeof(id));
	id.protocol = SCSI_PROTO_ISCSI;
	snprintf(id.name, sizeof(id.name), "%s", name);
	snprintf(id.port, sizeof(id.port), "%s,i,0x%012" PRIx64, name, isid);
	r = scsi_nexus_new(t, &id, &n);
	if (r < 0)
		fail_msg("scsi_nexus_new: %s", strerror(-r));
	return n;
}

struct st_wait {
	bool in_submit;
	unsigned calls;
	bool done;
};

static void st_done(struct scsi_cmd *cmd)
{
	struct st_wait *w = cmd->opaque;

	if (w->in_submit)
		fail_msg("done() ran inside scsi_cmd_submit");
	w->calls++;
	w->done = true;
}

uint8_t st_run_wire(struct scsi_nexus *n, uint64_t wire_lun, const uint8_t *cdb,
		    size_t cdb_len, enum scsi_data_dir dir, void *buf, size_t len,
		    struct st_result *res)
{
	struct reactor *r = tu_reactor();
	struct st_wait w = { .in_submit = true };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct scsi_cmd cmd;

	assert_true(cdb_len <= SCSI_CDB_MAX);
	memset(&cmd, 0, sizeof(cmd));
	cmd.nexus = n;
	cmd.lun = wire_lun;
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.cdb_len = (uint8_t)cdb_len;
	cmd.dir = buf && len ? dir : SCSI_DIR_NONE;
	cmd.iov = buf ? &iov : NULL;
	cmd.iovcnt = buf ? 1 : 0;
	cmd.xfer_len = buf ? (uint32_t)len : 0;
	cmd.done = st_done;
	cmd.opaque = &w;
	/* Stale results must not survive: the core sets every one. */
	cmd.status = 0xff;
	cmd.data_len = 0xdeadbeef;
	cmd.sense_len = 0xee;
	scsi_cmd_submit(&cmd);
	w.in_submit = false;
	assert_int_equal(reactor_run_until(r, &w.done), 0);
	/* One more pass: a second done() would show up here. */
	reactor_run_once(r, false);
	assert_int_equal(w.calls, 1);
	assert_true(cmd.data_len <= cmd.xfer_len);
	assert_true(cmd.sense_len <= SCSI_SENSE_MAX);
	if (cmd.status == SCSI_CHECK_CONDITION)
		assert_true(cmd.sense_len >= 14);
	if (res) {
		memset(res, 0, sizeof(*res));
		res->status = cmd.status;
		res->sense_len = cmd.sense_len;
		memcpy(res->sense, cmd.sense, cmd.sense_len);
		scsi_sense_parse(cmd.sense, cmd.sense_len, &res->key, &res->asc, &res->ascq);
		res->data_len = cmd.data_len;
		res->want_len = cmd.want_len;
	}
	return cmd.status;
}

uint8_t st_run(struct scsi_nexus *n, unsigned lun, const uint8_t *cdb, size_t cdb_len,
	       enum scsi_data_dir dir, void *buf, size_t len, struct st_result *res)
{
	return st_run_wire(n, scsi_lun_encode(lun), cdb, cdb_len, dir, buf, len, res);
}

unsigned st_clear_ua(struct scsi_nexus *n, unsigned lun)
{
	static const uint8_t tur[6] = { 0 };
	struct st_result res;
	unsigned k = 0;

	while (st_run(n, lun, tur, sizeof(tur), SCSI_DIR_NONE, NULL, 0, &res) ==
	       SCSI_CHECK_CONDITION && res.key == SCSI_SK_UNIT_ATTENTION) {
		k++;
		assert_true(k < 64);
	}
	return k;
}

void st_fix_init(struct st_fix *f, const char *spec0)
{
	f->t = st_target(NULL);
	st_add_lu(f->t, 0, spec0, NULL);
	f->n = st_nexus(f->t, "iqn.2024-01.org.example:host1", 1);
	st_clear_ua(f->n, 0);
}

int st_fix_teardown(void **state)
{
	struct st_fix *f = *state;

	scsi_nexus_free(f->n);
	scsi_target_free(f->t);
	return 0;
}

void st_assert_sense_at(const struct st_result *res, uint8_t key, uint8_t asc, uint8_t ascq,
			const char *file, int line)
{
	if (res->status != SCSI_CHECK_CONDITION || res->key != key || res->asc != asc ||
	    res->ascq != ascq) {
		print_error("expected CHECK CONDITION %x/%02x/%02x, got %s (%02xh) %x/%02x/%02x\n",
			    key, asc, ascq, scsi_status_str(res->status), res->status, res->key,
			    res->asc, res->ascq);
		_fail(file, line);
	}
}
