/* SPDX-License-Identifier: MIT */
/*
 * errmap.c: disk_status -> NBD error (see errmap.h). The table below is
 * the only place the NBD frontend decides which error a client sees for a
 * failed disk request; tests/unit/test-nbdsrv-errmap.c checks every cell.
 */
#include "config.h"

#include <errno.h>

#include "common/compiler.h"
#include "nbd/errmap.h"
#include "nbd/proto.h"
#include "storage/disk.h"

/* Marker in the table: map io->os_errno instead. */
#define ERRNO_MAP 0xffu

/*
 * disk_status x command class -> NBD error. Choices beyond the obvious:
 * - ILLEGAL_BLOCK is "past the end": EINVAL for reads and trims, ENOSPC for
 *   writes (proto.md, "Error values").
 * - UNSUPPORTED may only become ENOTSUP for a FAST_ZERO write-zeroes; the
 *   spec forbids ENOTSUP elsewhere, so it is EINVAL.
 * - RESERVATION_CONFLICT is an access refusal: EPERM, as a read-only
 *   refusal is.
 * - MEMORY_ACCESS, MEDIUM_ERROR and ABORTED_PREEMPT are failures of the
 *   server side the client cannot fix: EIO.
 */
static const uint8_t nbdsrv_status_table[DISK_STATUS_COUNT][NBDSRV_ERRC_COUNT] = {
	/*                             READ          WRITE         FAST_ZERO */
	[DISK_OK]                  = { 0,            0,            0 },
	[DISK_ILLEGAL_BLOCK]       = { NBDW_EINVAL,  NBDW_ENOSPC,  NBDW_ENOSPC },
	[DISK_INVALID_INPUT]       = { NBDW_EINVAL,  NBDW_EINVAL,  NBDW_EINVAL },
	[DISK_IO_ERROR]            = { ERRNO_MAP,    ERRNO_MAP,    ERRNO_MAP },
	[DISK_MEDIUM_ERROR]        = { NBDW_EIO,     NBDW_EIO,     NBDW_EIO },
	[DISK_MEMORY_ACCESS]       = { NBDW_EIO,     NBDW_EIO,     NBDW_EIO },
	[DISK_READ_ONLY]           = { NBDW_EPERM,   NBDW_EPERM,   NBDW_EPERM },
	[DISK_RESERVATION_CONFLICT]= { NBDW_EPERM,   NBDW_EPERM,   NBDW_EPERM },
	[DISK_ABORTED_PREEMPT]     = { NBDW_EIO,     NBDW_EIO,     NBDW_EIO },
	[DISK_UNSUPPORTED]         = { NBDW_EINVAL,  NBDW_EINVAL,  NBDW_ENOTSUP },
};

uint32_t nbdsrv_error_of_errno(int err, enum nbdsrv_err_class cls)
{
	switch (err) {
	case 0:
		return 0;
	case EPERM:
	case EACCES:
	case EROFS:
		return NBDW_EPERM;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBDW_ENOSPC;
	case ENOMEM:
		return NBDW_ENOMEM;
	case EINVAL:
	case ERANGE:
	/* The protocol keeps EOVERFLOW for a DF read that does not fit one
	 * chunk and for over-long requests, both decided by the server
	 * itself, never by the disk. */
	case EOVERFLOW:
		return NBDW_EINVAL;
	case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
	case EOPNOTSUPP:
#endif
		return cls == NBDSRV_ERRC_FAST_ZERO ? NBDW_ENOTSUP : NBDW_EINVAL;
	default:
		/* ESHUTDOWN included: to a client it says that this server
		 * is stopping and the client must disconnect, which a disk
		 * failing (a remote export below going away) does not mean;
		 * the server sends it itself when it drains. */
		return NBDW_EIO;
	}
}

uint32_t nbdsrv_error_of(int status, int os_errno, enum nbdsrv_err_class cls)
{
	uint8_t v;

	if ((unsigned)cls >= NBDSRV_ERRC_COUNT)
		cls = NBDSRV_ERRC_READ;
	if (status < 0 || status >= DISK_STATUS_COUNT)
		return NBDW_EIO;
	v = nbdsrv_status_table[status][cls];
	if (v == ERRNO_MAP) {
		uint32_t e = nbdsrv_error_of_errno(os_errno, cls);

		/* An I/O error with no errno is still an error. */
		return e ? e : NBDW_EIO;
	}
	return v;
}

const char *nbdsrv_error_name(uint32_t nbd_error)
{
	switch (nbd_error) {
	case 0: return "OK";
	case NBDW_EPERM: return "EPERM";
	case NBDW_EIO: return "EIO";
	case NBDW_ENOMEM: return "ENOMEM";
	case NBDW_EINVAL: return "EINVAL";
	case NBDW_ENOSPC: return "ENOSPC";
	case NBDW_EOVERFLOW: return "EOVERFLOW";
	case NBDW_ENOTSUP: return "ENOTSUP";
	case NBDW_ESHUTDOWN: return "ESHUTDOWN";
	default: return "E?";
	}
}
