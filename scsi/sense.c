/* SPDX-License-Identifier: MIT */
/*
 * sense.c: how the SCSI core answers: fixed-format sense data (SPC-4
 * §4.5.3), the data-in/data-out helpers with their residual bookkeeping,
 * the one table from enum disk_status to SCSI status and sense, and the
 * LUN and sense helpers of scsi.h.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/internal.h"

#define FIXED_SENSE_LEN 18

/* ---- sense -------------------------------------------------------------------- */

/* Builds fixed-format sense into @cmd (SPC-4 §4.5.3): response code 70h
 * (current error), @info in the 4-byte INFORMATION field when it fits
 * (VALID set; SPC-4 says a value that does not fit leaves VALID clear),
 * and the 3 sense-key specific bytes @sks (NULL: none). */
static void sense_build(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
			const uint64_t *info, const uint8_t *sks)
{
	uint8_t *s = cmd->sense;

	memset(s, 0, FIXED_SENSE_LEN);
	s[0] = 0x70;
	s[2] = key & 0x0f;
	if (info && *info <= UINT32_MAX) {
		s[0] |= 0x80;
		ds_put_be32(s + 3, (uint32_t)*info);
	}
	s[7] = FIXED_SENSE_LEN - 8;
	s[12] = asc;
	s[13] = ascq;
	if (sks)
		memcpy(s + 15, sks, 3);
	cmd->sense_len = FIXED_SENSE_LEN;
	cmd->status = SCSI_CHECK_CONDITION;
}

void scsi_cmd_sense(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	sense_build(cmd, key, asc, ascq, NULL, NULL);
}

void scsi_cmd_sense_info(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
			 uint64_t info)
{
	sense_build(cmd, key, asc, ascq, &info, NULL);
}

void scsi_cmd_invalid_field(struct scsi_cmd *cmd, bool in_cdb, uint16_t byte, int bit)
{
	/* SPC-4 §4.5.2.4.2: SKSV, C/D (1: the CDB), BPV and BIT POINTER,
	 * then the FIELD POINTER. */
	uint8_t sks[3];

	sks[0] = 0x80 | (in_cdb ? 0x40 : 0);
	if (bit >= 0 && bit <= 7)
		sks[0] |= 0x08 | (uint8_t)bit;
	ds_put_be16(sks + 1, byte);
	sense_build(cmd, SCSI_SK_ILLEGAL_REQUEST, in_cdb ? 0x24 : 0x26, 0x00, NULL, sks);
}

void scsi_cmd_status(struct scsi_cmd *cmd, uint8_t status)
{
	cmd->status = status;
	cmd->sense_len = 0;
}

/* ---- data ------------------------------------------------------------------------ */

void scsi_cmd_data_in(struct scsi_cmd *cmd, const void *buf, size_t len, size_t alloc_len)
{
	size_t want = MIN(len, alloc_len), n = MIN(want, (size_t)cmd->xfer_len);

	cmd->want_len = want;
	cmd->data_len = 0;
	if (cmd->dir != SCSI_DIR_IN || !n)
		return;
	cmd->data_len = (uint32_t)iov_from_buf(cmd->iov, cmd->iovcnt, 0, buf, n);
}

size_t scsi_cmd_data_out(struct scsi_cmd *cmd, void *buf, size_t len)
{
	size_t n = 0;

	cmd->want_len = len;
	if (cmd->dir == SCSI_DIR_OUT)
		n = iov_to_buf(cmd->iov, cmd->iovcnt, 0, buf, MIN(len, (size_t)cmd->xfer_len));
	memset((uint8_t *)buf + n, 0, len - n);
	return n;
}

/* ---- the disk_status table ---------------------------------------------------------- */

/*
 * One row per enum disk_status: the SCSI status and, with CHECK
 * CONDITION, the sense key and ASC/ASCQ (SPC-4 §4.5.6 and Annex D).
 * info: the LBA goes in the INFORMATION field. Rows marked ROW_BY_MEDIUM
 * or ROW_BY_ERRNO are refined below from the request.
 */
enum { ROW_PLAIN = 0, ROW_BY_MEDIUM, ROW_BY_ERRNO };

static const struct status_row {
	uint8_t status, key, asc, ascq;
	bool info;
	uint8_t how;
} status_rows[DISK_STATUS_COUNT] = {
	[DISK_OK] = { SCSI_GOOD, 0, 0, 0, false, ROW_PLAIN },
	/* LOGICAL BLOCK ADDRESS OUT OF RANGE */
	[DISK_ILLEGAL_BLOCK] = { SCSI_CHECK_CONDITION, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00, false, ROW_PLAIN },
	/* INVALID FIELD IN CDB */
	[DISK_INVALID_INPUT] = { SCSI_CHECK_CONDITION, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00, false, ROW_PLAIN },
	/* refined by errno; the default is a medium error at the LBA */
	[DISK_IO_ERROR] = { SCSI_CHECK_CONDITION, SCSI_SK_MEDIUM_ERROR, 0x11, 0x00, true, ROW_BY_ERRNO },
	/* refined by io->medium */
	[DISK_MEDIUM_ERROR] = { SCSI_CHECK_CONDITION, SCSI_SK_MEDIUM_ERROR, 0x11, 0x00, true, ROW_BY_MEDIUM },
	/* The data could not be moved between the initiator's buffers and
	 * the disk: ABORTED COMMAND / DATA PHASE ERROR, which initiators
	 * retry. */
	[DISK_MEMORY_ACCESS] = { SCSI_CHECK_CONDITION, SCSI_SK_ABORTED_COMMAND, 0x4B, 0x00, false, ROW_PLAIN },
	/* WRITE PROTECTED */
	[DISK_READ_ONLY] = { SCSI_CHECK_CONDITION, SCSI_SK_DATA_PROTECT, 0x27, 0x00, false, ROW_PLAIN },
	/* SPC-4 §5.13.1: the status alone, no sense */
	[DISK_RESERVATION_CONFLICT] = { SCSI_RESERVATION_CONFLICT, 0, 0, 0, false, ROW_PLAIN },
	/* SPC-4 PREEMPT AND ABORT: the commands it aborts end with TASK
	 * ABORTED, as the control page's TAS = 1 says */
	[DISK_ABORTED_PREEMPT] = { SCSI_TASK_ABORTED, 0, 0, 0, false, ROW_PLAIN },
	/* The opcode is in our tables (REPORT SUPPORTED OPERATION CODES lists
	 * it), so what the disk lacks is the variant the CDB asked for:
	 * INVALID FIELD IN CDB rather than INVALID COMMAND OPERATION CODE. */
	[DISK_UNSUPPORTED] = { SCSI_CHECK_CONDITION, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00, false, ROW_PLAIN },
};

/* A status outside the enum (a bug below us): INTERNAL TARGET FAILURE. */
static const struct status_row bad_status_row = {
	SCSI_CHECK_CONDITION, SCSI_SK_HARDWARE_ERROR, 0x44, 0x00, false, ROW_PLAIN
};

/* Whether @io only read the medium: a read, or a PRE-FETCH (CACHE), whose
 * failure is an unrecovered read, not a write error. */
static bool reads_medium(const struct disk_io *io)
{
	return io->op == DISK_OP_READ || io->op == DISK_OP_CACHE;
}

/* DISK_MEDIUM_ERROR details (SBC-3 §4.18 for the protection checks). */
static void medium_row(const struct disk_io *io, struct status_row *row)
{
	bool write = io->op == DISK_OP_WRITE || io->op == DISK_OP_WRITE_ZEROES;

	switch (io->medium) {
	case DISK_MEDIUM_GUARD:
		row->asc = 0x10;        /* LOGICAL BLOCK GUARD CHECK FAILED */
		row->ascq = 0x01;
		break;
	case DISK_MEDIUM_APP_TAG:
		row->asc = 0x10;        /* ... APPLICATION TAG CHECK FAILED */
		row->ascq = 0x02;
		break;
	case DISK_MEDIUM_REF_TAG:
		row->asc = 0x10;        /* ... REFERENCE TAG CHECK FAILED */
		row->ascq = 0x03;
		break;
	case DISK_MEDIUM_WRITE_FAULT:
		row->asc = 0x0C;        /* WRITE ERROR */
		row->ascq = 0x00;
		break;
	case DISK_MEDIUM_UNRECOVERED_READ:
		row->asc = 0x11;        /* UNRECOVERED READ ERROR */
		row->ascq = 0x00;
		break;
	case DISK_MEDIUM_NONE:
	default:
		row->asc = reads_medium(io) ? 0x11 : 0x0C;
		row->ascq = 0x00;
		break;
	}
	row->info = io->op == DISK_OP_READ || write;
}

/* DISK_IO_ERROR by errno: what the host's failure means to the initiator. */
static void errno_row(const struct disk_io *io, struct status_row *row)
{
	bool write = io->op == DISK_OP_WRITE || io->op == DISK_OP_WRITE_ZEROES;

	switch (io->os_errno) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		/* SBC-3 §4.7.3.6: a thin LU out of space (a file that cannot
		 * grow is out of space too) */
		*row = (struct status_row){ SCSI_CHECK_CONDITION, SCSI_SK_DATA_PROTECT, 0x27, 0x07,
					    false, ROW_PLAIN };
		break;
	case EROFS:
	case EPERM:
	case EACCES:
		*row = (struct status_row){ SCSI_CHECK_CONDITION, SCSI_SK_DATA_PROTECT, 0x27, 0x00,
					    false, ROW_PLAIN };
		break;
	case ENOMEM:
	case EAGAIN:
	case ENOBUFS:
		/* Out of resources for now: BUSY makes the initiator retry. */
		*row = (struct status_row){ SCSI_BUSY, 0, 0, 0, false, ROW_PLAIN };
		break;
	case ENOMEDIUM:
		*row = (struct status_row){ SCSI_CHECK_CONDITION, SCSI_SK_NOT_READY, 0x3A, 0x00,
					    false, ROW_PLAIN };
		break;
	case EOPNOTSUPP:
	case EINVAL:
		*row = (struct status_row){ SCSI_CHECK_CONDITION, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00,
					    false, ROW_PLAIN };
		break;
	case EIO:
	case EILSEQ:
	case EBADMSG:
	case ENODATA:
		/* The medium itself failed: a read cannot be recovered, anything
		 * else did not get written. Only reads and writes name an LBA. */
		row->asc = reads_medium(io) ? 0x11 : 0x0C;
		row->ascq = 0x00;
		row->info = io->op == DISK_OP_READ || write;
		break;
	default:
		/* The host failed in a way that says nothing about the medium
		 * (a lost remote, a timeout): HARDWARE ERROR / INTERNAL
		 * TARGET FAILURE, which initiators may retry. */
		*row = (struct status_row){ SCSI_CHECK_CONDITION, SCSI_SK_HARDWARE_ERROR, 0x44, 0x00,
					    false, ROW_PLAIN };
		break;
	}
}

void scsi_cmd_disk_status(struct scsi_cmd *cmd, const struct disk_io *io, uint64_t lba)
{
	struct status_row row;

	if (io->status < 0 || io->status >= DISK_STATUS_COUNT)
		row = bad_status_row;
	else
		row = status_rows[io->status];
	if (row.how == ROW_BY_MEDIUM)
		medium_row(io, &row);
	else if (row.how == ROW_BY_ERRNO)
		errno_row(io, &row);
	if (row.status != SCSI_CHECK_CONDITION) {
		scsi_cmd_status(cmd, row.status);
		return;
	}
	if (row.info)
		scsi_cmd_sense_info(cmd, row.key, row.asc, row.ascq, lba);
	else
		scsi_cmd_sense(cmd, row.key, row.asc, row.ascq);
}

/* ---- helpers of scsi.h ------------------------------------------------------------- */

int scsi_lun_decode(uint64_t wire)
{
	uint8_t b0 = (uint8_t)(wire >> 56), b1 = (uint8_t)(wire >> 48);

	/* Single level only: the second to fourth levels must be zero. */
	if (wire & 0x0000FFFFFFFFFFFFull)
		return -1;
	switch (b0 >> 6) {
	case 0:         /* peripheral device addressing, bus 0 (SAM-5 §4.7.6) */
		return (b0 & 0x3f) ? -1 : b1;
	case 1:         /* flat space addressing (SAM-5 §4.7.7) */
		return ((b0 & 0x3f) << 8) | b1;
	default:
		return -1;
	}
}

uint64_t scsi_lun_encode(unsigned lun)
{
	if (lun < 256)
		return (uint64_t)lun << 48;
	return ((uint64_t)(0x40 | ((lun >> 8) & 0x3f)) << 56) | ((uint64_t)(lun & 0xff) << 48);
}

bool scsi_cdb_data_out(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x04:      /* FORMAT UNIT */
	case 0x0A:      /* WRITE(6) */
	case 0x15:      /* MODE SELECT(6) */
	case 0x1D:      /* SEND DIAGNOSTIC */
	case 0x2A:      /* WRITE(10) */
	case 0x2E:      /* WRITE AND VERIFY(10) */
	case 0x2F:      /* VERIFY(10): data-out with BYTCHK */
	case 0x3B:      /* WRITE BUFFER */
	case 0x3F:      /* WRITE LONG(10) */
	case 0x41:      /* WRITE SAME(10) */
	case 0x42:      /* UNMAP */
	case 0x4C:      /* LOG SELECT */
	case 0x55:      /* MODE SELECT(10) */
	case 0x5F:      /* PERSISTENT RESERVE OUT */
	case 0x83:      /* THIRD-PARTY COPY OUT */
	case 0x89:      /* COMPARE AND WRITE */
	case 0x8A:      /* WRITE(16) */
	case 0x8B:      /* ORWRITE(16) */
	case 0x8E:      /* WRITE AND VERIFY(16) */
	case 0x8F:      /* VERIFY(16) */
	case 0x93:      /* WRITE SAME(16) */
	case 0x9F:      /* SERVICE ACTION OUT(16): WRITE LONG(16) */
	case 0xA4:      /* MAINTENANCE OUT */
	case 0xAA:      /* WRITE(12) */
	case 0xAE:      /* WRITE AND VERIFY(12) */
	case 0xAF:      /* VERIFY(12) */
	case 0xB5:      /* SECURITY PROTOCOL OUT */
	case 0xB6:      /* SET STREAMING (MMC-6) */
	case 0xBF:      /* SEND DVD STRUCTURE (MMC-6) */
		return true;
	case 0x7F:      /* variable length: everything but READ(32) writes */
		return ds_get_be16(cdb + 8) != 0x0009;
	default:
		return false;
	}
}

void scsi_sense_parse(const uint8_t *sense, size_t len, uint8_t *key, uint8_t *asc,
		      uint8_t *ascq)
{
	*key = *asc = *ascq = 0;
	if (!sense || len < 1)
		return;
	switch (sense[0] & 0x7f) {
	case 0x70:
	case 0x71:
		if (len > 2)
			*key = sense[2] & 0x0f;
		if (len > 13) {
			*asc = sense[12];
			*ascq = sense[13];
		}
		break;
	case 0x72:
	case 0x73:
		if (len > 3) {
			*key = sense[1] & 0x0f;
			*asc = sense[2];
			*ascq = sense[3];
		}
		break;
	default:
		break;
	}
}

const char *scsi_status_str(uint8_t status)
{
	switch (status) {
	case SCSI_GOOD: return "GOOD";
	case SCSI_CHECK_CONDITION: return "CHECK CONDITION";
	case SCSI_CONDITION_MET: return "CONDITION MET";
	case SCSI_BUSY: return "BUSY";
	case SCSI_RESERVATION_CONFLICT: return "RESERVATION CONFLICT";
	case SCSI_TASK_SET_FULL: return "TASK SET FULL";
	case SCSI_ACA_ACTIVE: return "ACA ACTIVE";
	case SCSI_TASK_ABORTED: return "TASK ABORTED";
	default: return "unknown status";
	}
}
