/* SPDX-License-Identifier: MIT */
/*
 * proto.h: diskstack's own copy of the NBD wire protocol constants and
 * message layouts (NetworkBlockDevice/nbd doc/proto.md, "Values" and the
 * message sections of "Protocol phases"), plus big-endian load/store
 * helpers.
 *
 * Everything is prefixed NBDW_ / nbdw_: libnbd and the kernel headers own
 * NBD_ / nbd_. Every integer on the wire is big-endian; messages are
 * encoded and decoded byte by byte (no packed structs).
 */
#ifndef DISKSTACK_NBD_PROTO_H
#define DISKSTACK_NBD_PROTO_H

#include <stdint.h>

#include "common/endian.h"

/* ---- magic numbers ------------------------------------------------------ */

#define NBDW_INIT_PASSWD            UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBDW_IHAVEOPT               UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBDW_OPT_REPLY_MAGIC        UINT64_C(0x0003e889045565a9)
#define NBDW_REQUEST_MAGIC          UINT32_C(0x25609513)
#define NBDW_SIMPLE_REPLY_MAGIC     UINT32_C(0x67446698)
#define NBDW_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

#define NBDW_DEFAULT_PORT 10809

/* ---- handshake ---------------------------------------------------------- */

/* Server handshake flags (16 bits). */
#define NBDW_FLAG_FIXED_NEWSTYLE  (1u << 0)
#define NBDW_FLAG_NO_ZEROES       (1u << 1)

/* Client flags (32 bits). */
#define NBDW_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBDW_FLAG_C_NO_ZEROES      (1u << 1)

/* Greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
#define NBDW_GREETING_BYTES 18
/* Option header: IHAVEOPT (64), option (32), length (32). */
#define NBDW_OPT_HDR_BYTES 16
/* Option reply header: magic (64), option (32), type (32), length (32). */
#define NBDW_OPT_REPLY_HDR_BYTES 20
/* EXPORT_NAME reply: size (64), flags (16), then 124 zero bytes unless
 * NO_ZEROES was agreed. */
#define NBDW_EXPORT_NAME_REPLY_BYTES 10
#define NBDW_EXPORT_NAME_PAD_BYTES 124

/* Options. */
enum {
	NBDW_OPT_EXPORT_NAME = 1,
	NBDW_OPT_ABORT = 2,
	NBDW_OPT_LIST = 3,
	NBDW_OPT_PEEK_EXPORT = 4,        /* withdrawn: treated as unknown */
	NBDW_OPT_STARTTLS = 5,
	NBDW_OPT_INFO = 6,
	NBDW_OPT_GO = 7,
	NBDW_OPT_STRUCTURED_REPLY = 8,
	NBDW_OPT_LIST_META_CONTEXT = 9,
	NBDW_OPT_SET_META_CONTEXT = 10,
	NBDW_OPT_EXTENDED_HEADERS = 11,  /* experimental: not supported */
};

/* Option reply types. */
#define NBDW_REP_ACK          UINT32_C(1)
#define NBDW_REP_SERVER       UINT32_C(2)
#define NBDW_REP_INFO         UINT32_C(3)
#define NBDW_REP_META_CONTEXT UINT32_C(4)
#define NBDW_REP_ERR(n)       (UINT32_C(0x80000000) + (n))
#define NBDW_REP_ERR_UNSUP           NBDW_REP_ERR(1)
#define NBDW_REP_ERR_POLICY          NBDW_REP_ERR(2)
#define NBDW_REP_ERR_INVALID         NBDW_REP_ERR(3)
#define NBDW_REP_ERR_PLATFORM        NBDW_REP_ERR(4)
#define NBDW_REP_ERR_TLS_REQD        NBDW_REP_ERR(5)
#define NBDW_REP_ERR_UNKNOWN         NBDW_REP_ERR(6)
#define NBDW_REP_ERR_SHUTDOWN        NBDW_REP_ERR(7)
#define NBDW_REP_ERR_BLOCK_SIZE_REQD NBDW_REP_ERR(8)
#define NBDW_REP_ERR_TOO_BIG         NBDW_REP_ERR(9)

/* Info types (NBD_OPT_INFO / NBD_OPT_GO). */
enum {
	NBDW_INFO_EXPORT = 0,       /* size (64), transmission flags (16) */
	NBDW_INFO_NAME = 1,         /* canonical name */
	NBDW_INFO_DESCRIPTION = 2,  /* human-readable text */
	NBDW_INFO_BLOCK_SIZE = 3,   /* minimum, preferred, maximum (32 each) */
};

/* Transmission flags (16 bits, per connection). */
#define NBDW_FLAG_HAS_FLAGS         (1u << 0)
#define NBDW_FLAG_READ_ONLY         (1u << 1)
#define NBDW_FLAG_SEND_FLUSH        (1u << 2)
#define NBDW_FLAG_SEND_FUA          (1u << 3)
#define NBDW_FLAG_ROTATIONAL        (1u << 4)
#define NBDW_FLAG_SEND_TRIM         (1u << 5)
#define NBDW_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBDW_FLAG_SEND_DF           (1u << 7)
#define NBDW_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBDW_FLAG_SEND_RESIZE       (1u << 9)
#define NBDW_FLAG_SEND_CACHE        (1u << 10)
#define NBDW_FLAG_SEND_FAST_ZERO    (1u << 11)

/* ---- transmission ------------------------------------------------------- */

/* Compact request: magic (32), flags (16), type (16), cookie (64),
 * offset (64), length (32); a WRITE's payload follows. */
#define NBDW_REQUEST_BYTES 28
/* Simple reply: magic (32), error (32), cookie (64); READ data follows. */
#define NBDW_SIMPLE_REPLY_BYTES 16
/* Structured reply chunk header: magic (32), flags (16), type (16),
 * cookie (64), payload length (32). */
#define NBDW_CHUNK_HDR_BYTES 20

/* Commands. */
enum {
	NBDW_CMD_READ = 0,
	NBDW_CMD_WRITE = 1,
	NBDW_CMD_DISC = 2,
	NBDW_CMD_FLUSH = 3,
	NBDW_CMD_TRIM = 4,
	NBDW_CMD_CACHE = 5,
	NBDW_CMD_WRITE_ZEROES = 6,
	NBDW_CMD_BLOCK_STATUS = 7,
};

/* Command flags. */
#define NBDW_CMD_FLAG_FUA       (1u << 0)
#define NBDW_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBDW_CMD_FLAG_DF        (1u << 2)
#define NBDW_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBDW_CMD_FLAG_FAST_ZERO (1u << 4)

/* Structured reply flags and chunk types. */
#define NBDW_REPLY_FLAG_DONE (1u << 0)
enum {
	NBDW_REPLY_TYPE_NONE = 0,
	NBDW_REPLY_TYPE_OFFSET_DATA = 1,     /* offset (64) + data */
	NBDW_REPLY_TYPE_OFFSET_HOLE = 2,     /* offset (64) + size (32) */
	NBDW_REPLY_TYPE_BLOCK_STATUS = 5,    /* context id (32) + n x (length, flags) */
	NBDW_REPLY_TYPE_ERROR = 32769,       /* error (32), msg len (16), msg */
	NBDW_REPLY_TYPE_ERROR_OFFSET = 32770,/* same, then offset (64) */
};

/* base:allocation flags. */
#define NBDW_STATE_HOLE (1u << 0)
#define NBDW_STATE_ZERO (1u << 1)

/* Error values on the wire. */
enum {
	NBDW_EPERM = 1,
	NBDW_EIO = 5,
	NBDW_ENOMEM = 12,
	NBDW_EINVAL = 22,
	NBDW_ENOSPC = 28,
	NBDW_EOVERFLOW = 75,
	NBDW_ENOTSUP = 95,
	NBDW_ESHUTDOWN = 108,
};

/* Strings (names, queries, messages) must be no longer than this. */
#define NBDW_STRING_MAX 4096
/* Largest READ/WRITE payload portable clients expect to be accepted. */
#define NBDW_PORTABLE_PAYLOAD (32u << 20)
/* Unfragmented (DF) reads up to this size must work. */
#define NBDW_DF_MIN 65536
/* At most this many extents per block-status chunk. */
#define NBDW_MAX_EXTENTS (1u << 20)

#endif
