/* SPDX-License-Identifier: MIT */
/*
 * status.c: the one table from enum disk_status to NVMe status (NVMe Base spec
 * §4.6.1.2, NVMe NVM Command Set spec §3.4.3) and the status strings.
 *
 * DNR ("Do Not Retry") is set where the same command cannot succeed on a
 * retry: a reservation conflict, a read-only namespace, a range past the
 * end, a field the disk refuses. Without it the Linux host retries a
 * failed command five times (nvme_core.max_retries), which for a
 * reservation conflict only multiplies the failures on the wire.
 */
#include "config.h"

#include <errno.h>

#include "common/compiler.h"
#include "nvme_emul/internal.h"

#define DNR NVMEEMU_DNR

static const uint16_t status_rows[DISK_STATUS_COUNT] = {
	[DISK_OK] = NVMEEMU_SUCCESS,
	[DISK_ILLEGAL_BLOCK] = NVMEEMU_LBA_RANGE | DNR,
	[DISK_INVALID_INPUT] = NVMEEMU_INVALID_FIELD | DNR,
	[DISK_IO_ERROR] = NVMEEMU_INTERNAL_ERROR,           /* refined by errno below */
	[DISK_MEDIUM_ERROR] = NVMEEMU_UNRECOVERED_READ,     /* refined by io->medium below */
	/* The data could not be moved to or from the host's buffers: the
	 * host may retry (NVMe Base spec: Data Transfer Error). */
	[DISK_MEMORY_ACCESS] = NVMEEMU_DATA_XFER_ERROR,
	[DISK_READ_ONLY] = NVMEEMU_WRITE_TO_RO | DNR,
	[DISK_RESERVATION_CONFLICT] = NVMEEMU_RESERVATION_CONFLICT | DNR,
	/* A retry is checked against the new reservation state and then
	 * fails with a conflict if it must. */
	[DISK_ABORTED_PREEMPT] = NVMEEMU_ABORT_PREEMPT,
	/* The opcode is ours (the effects log lists it); the disk lacks
	 * the variant asked for. */
	[DISK_UNSUPPORTED] = NVMEEMU_INVALID_FIELD | DNR,
};

static bool io_writes(const struct disk_io *io)
{
	return io->op == DISK_OP_WRITE || io->op == DISK_OP_WRITE_ZEROES ||
	       io->op == DISK_OP_UNMAP || io->op == DISK_OP_FLUSH;
}

static uint16_t medium_status(const struct disk_io *io)
{
	switch (io->medium) {
	case DISK_MEDIUM_GUARD:
		return NVMEEMU_GUARD_CHECK | DNR;
	case DISK_MEDIUM_APP_TAG:
		return NVMEEMU_APPTAG_CHECK | DNR;
	case DISK_MEDIUM_REF_TAG:
		return NVMEEMU_REFTAG_CHECK | DNR;
	case DISK_MEDIUM_WRITE_FAULT:
		return NVMEEMU_WRITE_FAULT;
	case DISK_MEDIUM_UNRECOVERED_READ:
		return NVMEEMU_UNRECOVERED_READ;
	case DISK_MEDIUM_NONE:
	default:
		return io_writes(io) ? NVMEEMU_WRITE_FAULT : NVMEEMU_UNRECOVERED_READ;
	}
}

/* DISK_IO_ERROR: what the host's failure means to an NVMe host. */
static uint16_t errno_status(const struct disk_io *io)
{
	switch (io->os_errno) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		/* A thin namespace out of space (NVMe Base spec: Capacity Exceeded). */
		return NVMEEMU_CAPACITY_EXCEEDED | DNR;
	case EROFS:
	case EPERM:
	case EACCES:
		return NVMEEMU_WRITE_TO_RO | DNR;
	case ENOMEDIUM:
		/* Namespace Not Ready, which the host retries. */
		return NVMEEMU_NS_NOT_READY;
	case EOPNOTSUPP:
	case EINVAL:
		return NVMEEMU_INVALID_FIELD | DNR;
	case EIO:
	case EILSEQ:
	case EBADMSG:
	case ENODATA:
		/* The medium itself failed. */
		return io_writes(io) ? NVMEEMU_WRITE_FAULT : NVMEEMU_UNRECOVERED_READ;
	default:
		/* Out of memory, a lost remote, a timeout: Internal Error
		 * without DNR, so the host retries. */
		return NVMEEMU_INTERNAL_ERROR;
	}
}

uint16_t nvmeemu_disk_status(const struct disk_io *io)
{
	if (io->status < 0 || io->status >= DISK_STATUS_COUNT)
		return NVMEEMU_INTERNAL_ERROR;
	if (io->status == DISK_IO_ERROR)
		return errno_status(io);
	if (io->status == DISK_MEDIUM_ERROR)
		return medium_status(io);
	return status_rows[io->status];
}

const char *nvmeemu_status_str(uint16_t status)
{
	switch (status & ~(NVMEEMU_DNR | NVMEEMU_MORE)) {
	case NVMEEMU_SUCCESS: return "Successful Completion";
	case NVMEEMU_INVALID_OPCODE: return "Invalid Command Opcode";
	case NVMEEMU_INVALID_FIELD: return "Invalid Field in Command";
	case NVMEEMU_DATA_XFER_ERROR: return "Data Transfer Error";
	case NVMEEMU_INTERNAL_ERROR: return "Internal Error";
	case NVMEEMU_ABORT_REQUESTED: return "Command Abort Requested";
	case NVMEEMU_ABORT_SQ_DELETION: return "Command Aborted due to SQ Deletion";
	case NVMEEMU_INVALID_NS: return "Invalid Namespace or Format";
	case NVMEEMU_CMD_SEQ_ERROR: return "Command Sequence Error";
	case NVMEEMU_SGL_LENGTH_INVALID: return "Data SGL Length Invalid";
	case NVMEEMU_PRP_OFFSET_INVALID: return "PRP Offset Invalid";
	case NVMEEMU_HOSTID_INCONSISTENT: return "Host Identifier Inconsistent Format";
	case NVMEEMU_ABORT_PREEMPT: return "Command Aborted due to Preempt and Abort";
	case NVMEEMU_LBA_RANGE: return "LBA Out of Range";
	case NVMEEMU_CAPACITY_EXCEEDED: return "Capacity Exceeded";
	case NVMEEMU_NS_NOT_READY: return "Namespace Not Ready";
	case NVMEEMU_RESERVATION_CONFLICT: return "Reservation Conflict";
	case NVMEEMU_AER_LIMIT: return "Asynchronous Event Request Limit Exceeded";
	case NVMEEMU_INVALID_LOG_PAGE: return "Invalid Log Page";
	case NVMEEMU_FEAT_NOT_SAVEABLE: return "Feature Identifier Not Saveable";
	case NVMEEMU_FEAT_NOT_CHANGEABLE: return "Feature Not Changeable";
	case NVMEEMU_FEAT_NOT_NS_SPECIFIC: return "Feature Not Namespace Specific";
	case NVMEEMU_NS_ALREADY_ATTACHED: return "Namespace Already Attached";
	case NVMEEMU_NS_NOT_ATTACHED: return "Namespace Not Attached";
	case NVMEEMU_CTRL_LIST_INVALID: return "Controller List Invalid";
	case NVMEEMU_WRITE_TO_RO: return "Attempted Write to Read Only Range";
	case NVMEEMU_WRITE_FAULT: return "Write Fault";
	case NVMEEMU_UNRECOVERED_READ: return "Unrecovered Read Error";
	case NVMEEMU_GUARD_CHECK: return "End-to-end Guard Check Error";
	case NVMEEMU_APPTAG_CHECK: return "End-to-end Application Tag Check Error";
	case NVMEEMU_REFTAG_CHECK: return "End-to-end Reference Tag Check Error";
	case NVMEEMU_COMPARE_FAILURE: return "Compare Failure";
	default: return "unknown status";
	}
}
