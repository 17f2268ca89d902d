/* SPDX-License-Identifier: MIT */
/*
 * nbdclient.h: a remote NBD export as a disk, through libnbd (nbd:<uri>;
 * nbd://, nbds://, nbd+unix://, nbds+unix:// URIs as libnbd's
 * nbd_connect_uri takes them).
 */
#ifndef DISKSTACK_STORAGE_NBDCLIENT_H
#define DISKSTACK_STORAGE_NBDCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

struct spec;
struct spec_ctx;

/* Tunables. nbdclient_opts_default() fills the defaults used by specs. */
struct nbdclient_opts {
	unsigned max_connections;     /* with multi-conn: at most this many (one
	                                 per reactor that uses the disk; default
	                                 16); without multi-conn always 1 */
	uint32_t reconnect_delay_ms;  /* after a failed reconnect, wait this long
	                                 before the next, doubling (default 100) */
	uint32_t reconnect_max_ms;    /* cap of that delay (default 10000) */
	unsigned reconnect_attempts;  /* consecutive failed reconnects before the
	                                 disk gives up for good (default 10) */
	/* Test hook (the fuzz target's scripted server), NULL otherwise: makes
	 * each connection's socket instead of connecting to the URI, which is
	 * then only shown. Returns a connected stream socket, owned by the disk
	 * from then on, or -errno. Called on the thread that opens the disk and
	 * on the worker pool (reconnects). */
	int (*connect_fd)(void *opaque);
	void *connect_opaque;
};

/* Fills @o with the defaults. */
void nbdclient_opts_default(struct nbdclient_opts *o);

/*
 * Connects to @uri (borrowed) and returns the export as a disk. The first
 * connection is made here (blocking); more are made on demand. Read-only
 * when @read_only or when the server says so; a writable open of a
 * read-only export fails with -EROFS. @opts may be NULL. Returns 0 with an
 * owned disk in *@out, or -errno with a message in @err (@errlen bytes; no
 * credentials or query parameters of the URI in it).
 */
int nbdclient_open(const char *uri, bool read_only, const struct nbdclient_opts *opts,
		   struct disk **out, char *err, size_t errlen);

/* The open function of the nbd: kind (nbdclient-spec.c). */
int nbdclient_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			struct disk **out, char *err, size_t errlen);

/*
 * The one table from a remote error (the errno libnbd reports for an NBD
 * error reply) to a disk status:
 *   0               DISK_OK
 *   EPERM, EROFS    DISK_READ_ONLY
 *   ENOSPC, EINVAL  DISK_ILLEGAL_BLOCK (NBD's answers for a request past the
 *                   end of the export; ours are range-checked locally, so the
 *                   export shrank under us)
 *   EOVERFLOW       DISK_INVALID_INPUT (request too large for the server)
 *   ENOTSUP         DISK_UNSUPPORTED (e.g. a fast zero the server cannot do)
 *   anything else   DISK_IO_ERROR with that errno (EIO, ENOMEM, ESHUTDOWN,
 *                   ENOTCONN for a lost connection, ...)
 */
int nbdclient_status_of_errno(int err);

/*
 * Block status conversion (exposed for tests): NBD extents are in bytes and
 * need not be sector-aligned; disk extents are sectors. A sector covered by
 * several byte extents gets the AND of their flags (it is a hole, or reads
 * as zero, only if all of it does). Runs with the same flags are merged;
 * conversion stops when @max extents are filled or @want sectors covered.
 */
struct nbdclient_extent_acc {
	struct disk_extent *ext;      /* output, caller-owned */
	uint32_t max;                 /* room in @ext */
	uint32_t nr;                  /* extents filled */
	uint32_t shift;               /* log2(sector size) */
	uint64_t want;                /* sectors asked for */
	uint64_t done;                /* sectors covered by @ext */
	uint32_t partial_bytes;       /* bytes seen of the sector after @done */
	uint32_t partial_flags;       /* AND of their flags */
};
/* Adds @bytes with DISK_EXTENT_* @flags. */
void nbdclient_extent_add(struct nbdclient_extent_acc *a, uint64_t bytes, uint32_t flags);

#endif
