/* SPDX-License-Identifier: MIT */
/*
 * fuzz-scsi-cdb.c: libFuzzer target for the SCSI core (scsi/): every
 * command of the input goes through scsi_cmd_submit against a target
 * with a small mem: disk LU, as a transport would send it, with its
 * data-out or data-in room in a heap block of exactly the announced
 * transfer length, so ASan sees any byte outside it.
 *
 * Input: 1 byte of set-up, then commands.
 *   cfg     bit 0: 4096-byte sectors; bit 1: a read-only disk; bit 2: a
 *           removable LU; bit 3: a second LU at LUN 1
 *   command byte 0: bit 0 the nexus (two initiators); bits 1-2 the LUN
 *           (0, 1, 7 = absent, the REPORT LUNS well-known LUN); bits 3-4
 *           the direction (none, in, out); bit 5: an LU reset first;
 *           bit 6: the nexus is lost and logs in again first
 *           byte 1: CDB length (mod 33); bytes 2-3: transfer length
 *           (little-endian, mod 16 KiB); then the CDB, then for data-out
 *           the data (what the input lacks is zero)
 * Checks, besides memory safety and leaks: done() runs exactly once, and
 * never inside scsi_cmd_submit; the status is a SAM-5 status; CHECK
 * CONDITION carries 18 bytes of fixed-format sense, other statuses none;
 * data_len never exceeds the transfer length and is 0 unless data-in.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PRELUDE_INITIALIZE
#include "tests/fuzz/fuzz-prelude.h"
#include "scsi/scsi.h"
#include "storage/layered.h"

#define MAX_CMDS 64
#define MAX_XFER (16u << 10)

struct wait {
	bool in_submit, done;
	unsigned calls;
};

static void cmd_done(struct scsi_cmd *cmd)
{
	struct wait *w = cmd->opaque;

	if (w->in_submit)
		abort();
	w->calls++;
	w->done = true;
}

static struct scsi_nexus *login(struct scsi_target *t, unsigned i)
{
	struct scsi_initiator_id id;
	struct scsi_nexus *n = NULL;

	memset(&id, 0, sizeof(id));
	id.protocol = SCSI_PROTO_ISCSI;
	strcpy(id.name, i ? "iqn.2024-01.org.example:b" : "iqn.2024-01.org.example:a");
	strcpy(id.port, i ? "iqn.2024-01.org.example:b,i,0x000000000001"
			  : "iqn.2024-01.org.example:a,i,0x000000000001");
	if (scsi_nexus_new(t, &id, &n) < 0)
		abort();
	return n;
}

static bool valid_status(uint8_t s)
{
	switch (s) {
	case SCSI_GOOD: case SCSI_CHECK_CONDITION: case SCSI_CONDITION_MET: case SCSI_BUSY:
	case SCSI_RESERVATION_CONFLICT: case SCSI_TASK_SET_FULL: case SCSI_TASK_ABORTED:
		return true;
	default:
		return false;
	}
}

static void add_lu(struct scsi_target *t, unsigned lun, uint8_t cfg)
{
	struct disk *d = NULL;
	struct scsi_lu *lu = NULL;
	struct scsi_lu_opts o = { .type = SCSI_LU_DISK, .removable = cfg & 4 };
	char err[256];

	if (ramdisk_new(256 << 10, cfg & 1 ? 4096 : 512, cfg & 2, &d, err, sizeof(err)) < 0)
		abort();
	if (scsi_lu_new(d, &o, &lu, err, sizeof(err)) < 0 || scsi_target_add_lu(t, lun, lu) < 0)
		abort();
	disk_unref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t luns[4] = {
		0, 0x0001000000000000ull, 0x0007000000000000ull, 0xC101000000000000ull
	};
	struct scsi_target *t = NULL;
	struct scsi_nexus *n[2];
	size_t pos = 1;

	if (size < 1)
		return 0;
	if (scsi_target_new("iqn.2024-01.org.example:fuzz", &t) < 0)
		abort();
	add_lu(t, 0, data[0]);
	if (data[0] & 8)
		add_lu(t, 1, data[0]);
	n[0] = login(t, 0);
	n[1] = login(t, 1);

	for (unsigned k = 0; k < MAX_CMDS && pos + 4 <= size; k++) {
		uint8_t flags = data[pos], cdb_len = data[pos + 1] % (SCSI_CDB_MAX + 1);
		uint32_t xfer = (data[pos + 2] | (uint32_t)data[pos + 3] << 8) % MAX_XFER;
		unsigned ni = flags & 1;
		enum scsi_data_dir dir = (enum scsi_data_dir)((flags >> 3) & 3);
		struct wait w = { .in_submit = true };
		struct scsi_cmd cmd;
		struct iovec iov;
		uint8_t *buf;

		pos += 4;
		if (dir > SCSI_DIR_OUT)
			dir = SCSI_DIR_NONE;
		if (dir == SCSI_DIR_NONE)
			xfer = 0;
		if (flags & 0x20)
			scsi_lu_reset(n[ni], luns[(flags >> 1) & 3]);
		if (flags & 0x40) {
			scsi_nexus_free(n[ni]);
			n[ni] = login(t, ni);
		}
		memset(&cmd, 0, sizeof(cmd));
		cmd.nexus = n[ni];
		cmd.lun = luns[(flags >> 1) & 3];
		cmd.cdb_len = cdb_len;
		if (size - pos < cdb_len)
			cdb_len = (uint8_t)(size - pos);
		memcpy(cmd.cdb, data + pos, cdb_len);
		pos += cdb_len;
		buf = malloc(xfer ? xfer : 1);
		if (!buf)
			abort();
		memset(buf, 0x5a, xfer);
		if (dir == SCSI_DIR_OUT) {
			size_t n_out = size - pos < xfer ? size - pos : xfer;

			memcpy(buf, data + pos, n_out);
			pos += n_out;
		}
		iov.iov_base = buf;
		iov.iov_len = xfer;
		cmd.dir = dir;
		cmd.iov = xfer ? &iov : NULL;
		cmd.iovcnt = xfer ? 1 : 0;
		cmd.xfer_len = xfer;
		cmd.done = cmd_done;
		cmd.opaque = &w;
		scsi_cmd_submit(&cmd);
		w.in_submit = false;
		if (reactor_run_until(main_reactor, &w.done) < 0)
			abort();
		reactor_run_once(main_reactor, false);
		if (w.calls != 1 || !valid_status(cmd.status))
			abort();
		if (cmd.status == SCSI_CHECK_CONDITION ? cmd.sense_len != 18 : cmd.sense_len != 0)
			abort();
		if (cmd.status == SCSI_CHECK_CONDITION && (cmd.sense[0] & 0x7f) != 0x70)
			abort();
		if (cmd.data_len > xfer || (dir != SCSI_DIR_IN && cmd.data_len))
			abort();
		free(buf);
	}
	while (reactor_pending(main_reactor))
		reactor_run_once(main_reactor, true);
	scsi_nexus_free(n[0]);
	scsi_nexus_free(n[1]);
	scsi_target_free(t);
	return 0;
}
