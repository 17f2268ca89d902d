/* SPDX-License-Identifier: MIT */
/*
 * errmap.h: the one mapping from disk completion statuses (and host
 * errnos) to NBD error values on the wire (the NBD protocol, doc/proto.md
 * in the nbd project, "Error values").
 */
#ifndef DISKSTACK_NBD_ERRMAP_H
#define DISKSTACK_NBD_ERRMAP_H

#include <stdint.h>

/* How the failed command used the disk; picks between errors the spec
 * reserves for particular commands. */
enum nbdsrv_err_class {
	NBDSRV_ERRC_READ = 0,   /* READ, TRIM, CACHE, BLOCK_STATUS, FLUSH: past the end is EINVAL */
	NBDSRV_ERRC_WRITE,      /* WRITE, WRITE_ZEROES: past the end is ENOSPC */
	NBDSRV_ERRC_FAST_ZERO,  /* WRITE_ZEROES with FAST_ZERO: "not fast" is ENOTSUP */
	NBDSRV_ERRC_COUNT
};

/* The NBD error for a disk completion @status (enum disk_status; with
 * DISK_IO_ERROR, @os_errno says which) of a command of class @cls.
 * DISK_OK gives 0; anything unknown gives NBDW_EIO. */
uint32_t nbdsrv_error_of(int status, int os_errno, enum nbdsrv_err_class cls);

/* The NBD error for a host errno (positive). ENOTSUP only with
 * @cls == NBDSRV_ERRC_FAST_ZERO; unknown values give NBDW_EIO. */
uint32_t nbdsrv_error_of_errno(int err, enum nbdsrv_err_class cls);

/* Name of an NBD error value ("EINVAL"), "E?" if unknown. */
const char *nbdsrv_error_name(uint32_t nbd_error);

#endif
