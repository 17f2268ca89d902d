/* SPDX-License-Identifier: MIT */
/*
 * test-nbdsrv.c: unit tests of the NBD server: the disk_status -> NBD
 * error table (every cell), errno mapping, metadata-context matching and
 * extent encoding, PSK file lines, the wiping of the PSK table as it
 * grows (regression: it grew with realloc, which left copies of the keys
 * in freed memory), and an in-process server on a
 * socketpair driven byte by byte (handshake errors, BLOCK_SIZE_REQD on a
 * 4096-byte-sector disk, structured replies, block status, DISC).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/reactor.h"
#include "nbd/errmap.h"
#include "nbd/meta.h"
#include "nbd/proto.h"
#include "nbd/server.h"
#include "net/netsrv.h"
#include "net/tls.h"
#include "storage/disk.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

/* ---- the error table ------------------------------------------------------ */

static void test_nbdsrv_errmap_table(void **state)
{
	static const struct {
		int status;
		uint32_t read, write, fast_zero;
	} want[] = {
		{ DISK_OK,                   0,           0,           0 },
		{ DISK_ILLEGAL_BLOCK,        NBDW_EINVAL, NBDW_ENOSPC, NBDW_ENOSPC },
		{ DISK_INVALID_INPUT,        NBDW_EINVAL, NBDW_EINVAL, NBDW_EINVAL },
		{ DISK_MEDIUM_ERROR,         NBDW_EIO,    NBDW_EIO,    NBDW_EIO },
		{ DISK_MEMORY_ACCESS,        NBDW_EIO,    NBDW_EIO,    NBDW_EIO },
		{ DISK_READ_ONLY,            NBDW_EPERM,  NBDW_EPERM,  NBDW_EPERM },
		{ DISK_RESERVATION_CONFLICT, NBDW_EPERM,  NBDW_EPERM,  NBDW_EPERM },
		{ DISK_ABORTED_PREEMPT,      NBDW_EIO,    NBDW_EIO,    NBDW_EIO },
		{ DISK_UNSUPPORTED,          NBDW_EINVAL, NBDW_EINVAL, NBDW_ENOTSUP },
	};
	unsigned seen = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		assert_int_equal(nbdsrv_error_of(want[i].status, 0, NBDSRV_ERRC_READ), want[i].read);
		assert_int_equal(nbdsrv_error_of(want[i].status, 0, NBDSRV_ERRC_WRITE), want[i].write);
		assert_int_equal(nbdsrv_error_of(want[i].status, 0, NBDSRV_ERRC_FAST_ZERO),
				 want[i].fast_zero);
		seen |= 1u << want[i].status;
	}
	/* DISK_IO_ERROR follows the errno. */
	assert_int_equal(nbdsrv_error_of(DISK_IO_ERROR, ENOSPC, NBDSRV_ERRC_WRITE), NBDW_ENOSPC);
	assert_int_equal(nbdsrv_error_of(DISK_IO_ERROR, EIO, NBDSRV_ERRC_READ), NBDW_EIO);
	assert_int_equal(nbdsrv_error_of(DISK_IO_ERROR, 0, NBDSRV_ERRC_READ), NBDW_EIO);
	seen |= 1u << DISK_IO_ERROR;
	/* Every status has a row. */
	assert_int_equal(seen, (1u << DISK_STATUS_COUNT) - 1);
	/* Out of range inputs are EIO, never 0. */
	assert_int_equal(nbdsrv_error_of(DISK_STATUS_COUNT, 0, NBDSRV_ERRC_READ), NBDW_EIO);
	assert_int_equal(nbdsrv_error_of(-1, 0, NBDSRV_ERRC_READ), NBDW_EIO);
}

static void test_nbdsrv_errmap_errno(void **state)
{
	(void)state;
	assert_int_equal(nbdsrv_error_of_errno(EPERM, NBDSRV_ERRC_WRITE), NBDW_EPERM);
	assert_int_equal(nbdsrv_error_of_errno(EROFS, NBDSRV_ERRC_WRITE), NBDW_EPERM);
	assert_int_equal(nbdsrv_error_of_errno(EACCES, NBDSRV_ERRC_READ), NBDW_EPERM);
	assert_int_equal(nbdsrv_error_of_errno(EDQUOT, NBDSRV_ERRC_WRITE), NBDW_ENOSPC);
	assert_int_equal(nbdsrv_error_of_errno(EFBIG, NBDSRV_ERRC_WRITE), NBDW_ENOSPC);
	assert_int_equal(nbdsrv_error_of_errno(ENOMEM, NBDSRV_ERRC_READ), NBDW_ENOMEM);
	assert_int_equal(nbdsrv_error_of_errno(EINVAL, NBDSRV_ERRC_READ), NBDW_EINVAL);
	/* EOVERFLOW and ESHUTDOWN are the server's own answers (a DF read that
	 * does not fit, a server that stops), never a disk's: a disk's ESHUTDOWN
	 * would make the client disconnect from a server that stays up. */
	assert_int_equal(nbdsrv_error_of_errno(EOVERFLOW, NBDSRV_ERRC_READ), NBDW_EINVAL);
	assert_int_equal(nbdsrv_error_of_errno(EOVERFLOW, NBDSRV_ERRC_WRITE), NBDW_EINVAL);
	assert_int_equal(nbdsrv_error_of_errno(ESHUTDOWN, NBDSRV_ERRC_READ), NBDW_EIO);
	assert_int_equal(nbdsrv_error_of(DISK_IO_ERROR, ESHUTDOWN, NBDSRV_ERRC_WRITE), NBDW_EIO);
	/* ENOTSUP only for fast zero. */
	assert_int_equal(nbdsrv_error_of_errno(EOPNOTSUPP, NBDSRV_ERRC_FAST_ZERO), NBDW_ENOTSUP);
	assert_int_equal(nbdsrv_error_of_errno(EOPNOTSUPP, NBDSRV_ERRC_WRITE), NBDW_EINVAL);
	assert_int_equal(nbdsrv_error_of_errno(ENOTSUP, NBDSRV_ERRC_READ), NBDW_EINVAL);
	assert_int_equal(nbdsrv_error_of_errno(EBADF, NBDSRV_ERRC_READ), NBDW_EIO);
	assert_int_equal(nbdsrv_error_of_errno(ENXIO, NBDSRV_ERRC_READ), NBDW_EIO);
	assert_string_equal(nbdsrv_error_name(NBDW_ENOSPC), "ENOSPC");
	assert_string_equal(nbdsrv_error_name(12345), "E?");
}

/* ---- metadata contexts ------------------------------------------------------- */

static uint32_t match(const char *q, bool list, int *ret)
{
	uint32_t m = 0xdead;

	*ret = nbdsrv_meta_match(q, strlen(q), list, &m);
	return m;
}

static void test_nbdsrv_meta_match(void **state)
{
	int ret;

	(void)state;
	assert_int_equal(match("base:allocation", false, &ret), NBDSRV_META_ALLOCATION);
	assert_int_equal(ret, 0);
	assert_int_equal(match("diskstack:layer", false, &ret), NBDSRV_META_LAYER);
	/* Wildcards list, never select. */
	assert_int_equal(match("base:", true, &ret), NBDSRV_META_ALLOCATION);
	assert_int_equal(match("base:", false, &ret), 0);
	assert_int_equal(ret, 0);
	assert_int_equal(match("diskstack:", true, &ret), NBDSRV_META_LAYER);
	/* Unknown namespaces and leaves are ignored. */
	assert_int_equal(match("qemu:dirty-bitmap:x", false, &ret), 0);
	assert_int_equal(ret, 0);
	assert_int_equal(match("base:nonsense", true, &ret), 0);
	assert_int_equal(match("base:allocationX", false, &ret), 0);
	assert_int_equal(match("x-base:allocation", false, &ret), 0);
	/* Malformed: no colon, or an empty namespace. */
	match("allocation", false, &ret);
	assert_int_equal(ret, -EINVAL);
	match(":allocation", true, &ret);
	assert_int_equal(ret, -EINVAL);
	assert_string_equal(nbdsrv_meta_name(0), "base:allocation");
	assert_string_equal(nbdsrv_meta_name(1), "diskstack:layer");
	assert_int_equal(nbdsrv_meta_id(0), 1);
}

static void test_nbdsrv_meta_encode(void **state)
{
	/* 512-byte sectors: data (layer 0), data (layer 0), zero+present
	 * (layer 1), hole (no layer), hole. */
	const struct disk_extent ext[] = {
		{ .count = 8, .flags = 0, .layer = 0 },
		{ .count = 8, .flags = 0, .layer = 0 },
		{ .count = 4, .flags = DISK_EXTENT_ZERO, .layer = 1 },
		{ .count = 16, .flags = DISK_EXTENT_HOLE | DISK_EXTENT_ZERO, .layer = -1 },
		{ .count = 2, .flags = DISK_EXTENT_HOLE | DISK_EXTENT_ZERO, .layer = -1 },
	};
	uint8_t out[8 * 8];
	uint32_t n;

	(void)state;
	n = nbdsrv_meta_encode(ext, 5, 9, 0, UINT32_MAX - 511, false, 0, out);
	assert_int_equal(n, 3);
	assert_int_equal(ds_get_be32(out), 16 * 512);
	assert_int_equal(ds_get_be32(out + 4), 0);
	assert_int_equal(ds_get_be32(out + 8), 4 * 512);
	assert_int_equal(ds_get_be32(out + 12), NBDW_STATE_ZERO);
	assert_int_equal(ds_get_be32(out + 16), 18 * 512);
	assert_int_equal(ds_get_be32(out + 20), NBDW_STATE_HOLE | NBDW_STATE_ZERO);

	n = nbdsrv_meta_encode(ext, 5, 9, 1, UINT32_MAX - 511, false, 0, out);
	assert_int_equal(n, 3);
	assert_int_equal(ds_get_be32(out + 4), 1);    /* top layer */
	assert_int_equal(ds_get_be32(out + 12), 2);   /* second layer */
	assert_int_equal(ds_get_be32(out + 20), 0);   /* nobody */

	/* REQ_ONE: one descriptor, clamped to the request. */
	n = nbdsrv_meta_encode(ext, 5, 9, 0, UINT32_MAX - 511, true, 4096, out);
	assert_int_equal(n, 1);
	assert_int_equal(ds_get_be32(out), 4096);
	n = nbdsrv_meta_encode(ext, 5, 9, 0, UINT32_MAX - 511, true, 1 << 20, out);
	assert_int_equal(n, 1);
	assert_int_equal(ds_get_be32(out), 16 * 512);

	/* A run longer than a descriptor holds ends the reply there. */
	n = nbdsrv_meta_encode(ext, 5, 9, 0, 4096, false, 0, out);
	assert_int_equal(n, 1);
	assert_int_equal(ds_get_be32(out), 4096);

	/* A plain disk: layer -1 data is "1", holes "0". */
	{
		const struct disk_extent plain[] = {
			{ .count = 1, .flags = 0, .layer = -1 },
			{ .count = 1, .flags = DISK_EXTENT_HOLE | DISK_EXTENT_ZERO, .layer = -1 },
		};
		n = nbdsrv_meta_encode(plain, 2, 12, 1, UINT32_MAX - 4095, false, 0, out);
		assert_int_equal(n, 2);
		assert_int_equal(ds_get_be32(out), 4096);
		assert_int_equal(ds_get_be32(out + 4), 1);
		assert_int_equal(ds_get_be32(out + 12), 0);
	}
	assert_int_equal(nbdsrv_meta_encode(ext, 0, 9, 0, 4096, false, 0, out), 0);
}

/* ---- PSK lines -------------------------------------------------------------------- */

static void test_nbdsrv_psk_line(void **state)
{
	char id[32];
	uint8_t key[16];
	size_t klen = 0;

	(void)state;
	assert_int_equal(netsrv_tls_parse_psk_line("alice:00ff10Ab", id, sizeof(id), key,
						   sizeof(key), &klen), 0);
	assert_string_equal(id, "alice");
	assert_int_equal(klen, 4);
	assert_int_equal(key[0], 0x00);
	assert_int_equal(key[1], 0xff);
	assert_int_equal(key[3], 0xab);
	assert_int_equal(netsrv_tls_parse_psk_line(":00", id, sizeof(id), key, sizeof(key), &klen),
			 -EINVAL);
	assert_int_equal(netsrv_tls_parse_psk_line("bob", id, sizeof(id), key, sizeof(key), &klen),
			 -EINVAL);
	assert_int_equal(netsrv_tls_parse_psk_line("bob:abc", id, sizeof(id), key, sizeof(key),
						   &klen), -EINVAL);
	assert_int_equal(netsrv_tls_parse_psk_line("bob:zz", id, sizeof(id), key, sizeof(key),
						   &klen), -EINVAL);
	assert_int_equal(netsrv_tls_parse_psk_line("bob:", id, sizeof(id), key, sizeof(key),
						   &klen), -EINVAL);
	/* Too long a key or identity. */
	assert_int_equal(netsrv_tls_parse_psk_line("b:000102030405060708090a0b0c0d0e0f10", id,
						   sizeof(id), key, sizeof(key), &klen), -EINVAL);
	assert_int_equal(netsrv_tls_parse_psk_line("0123456789012345678901234567890123:00", id,
						   sizeof(id), key, sizeof(key), &klen), -EINVAL);
}

/* ---- PSK table: key material freed only after a wipe ------------------------------ */

static struct {
	unsigned calls;
	size_t bytes, nonzero;
} wiped;

static void psk_free_hook(const void *p, size_t len)
{
	wiped.calls++;
	wiped.bytes += len;
	for (size_t i = 0; i < len; i++)
		wiped.nonzero += ((const uint8_t *)p)[i] != 0;
}

/* Writes a psktool file of @n keys ("id<i>:" then 32 bytes of i ^ 0xa5...),
 * then @tail (a last line, or NULL). */
static const char *psk_file(unsigned n, const char *tail)
{
	const char *path = tu_path("keys.psk");
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	for (unsigned i = 0; i < n; i++) {
		fprintf(fp, "id%u:", i);
		for (unsigned b = 0; b < 32; b++)
			fprintf(fp, "%02x", (i + b) ^ 0xa5);
		fputc('\n', fp);
	}
	if (tail)
		fprintf(fp, "%s\n", tail);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static void test_nbdsrv_psk_table_wipe(void **state)
{
	struct netsrv_tls_opts o = { .psk_file = NULL };
	struct netsrv_tls *t = NULL;
	uint8_t key[64];
	char err[256];
	unsigned grown;

	(void)state;
	/* 100 keys: the table grows past its first size several times, and
	 * every block it leaves behind is wiped before it is freed. */
	o.psk_file = psk_file(100, NULL);
	memset(&wiped, 0, sizeof(wiped));
	netsrv_tls_set_free_hook(psk_free_hook);
	assert_int_equal(netsrv_tls_new(&o, &t, err, sizeof(err)), 0);
	grown = wiped.calls;
	assert_true(grown >= 2);
	assert_int_equal(wiped.nonzero, 0);
	/* Entries moved by the growth are intact: first, middle, last. */
	for (unsigned i = 0; i < 100; i += 33) {
		char id[16];

		snprintf(id, sizeof(id), "id%u", i);
		assert_int_equal(netsrv_tls_psk_key(t, id, key, sizeof(key)), 32);
		for (unsigned b = 0; b < 32; b++)
			assert_int_equal(key[b], (uint8_t)((i + b) ^ 0xa5));
	}
	assert_int_equal(netsrv_tls_psk_key(t, "id99", key, sizeof(key)), 32);
	assert_int_equal(netsrv_tls_psk_key(t, "nobody", key, sizeof(key)), -ENOENT);
	assert_int_equal(netsrv_tls_psk_key(t, "id1", key, 16), -ENOSPC);
	/* Freeing the server's credentials wipes the table itself. */
	netsrv_tls_free(t);
	assert_int_equal(wiped.calls, grown + 1);
	assert_int_equal(wiped.nonzero, 0);

	/* A file that fails half-way (a bad line after 40 keys) wipes what
	 * it loaded too. */
	o.psk_file = psk_file(40, "bad:xyz");
	memset(&wiped, 0, sizeof(wiped));
	assert_int_equal(netsrv_tls_new(&o, &t, err, sizeof(err)), -EINVAL);
	assert_true(wiped.calls >= 2);
	assert_int_equal(wiped.nonzero, 0);
	netsrv_tls_set_free_hook(NULL);
}

/* ---- an in-process server --------------------------------------------------------- */

struct srv_thread {
	pthread_t thread;
	int fd;                      /* the server's end of the socketpair */
	struct disk *disk;           /* handed to the server */
	int status;
};

static void *srv_main(void *arg)
{
	struct srv_thread *st = arg;
	struct netsrv_opts no = { .name = "nbd", .threads = 1 };
	struct nbdsrv_opts o = { .max_requests = 4 };
	const struct netsrv_proto *p = NULL;
	struct netsrv *net = NULL;
	struct nbdsrv *s = NULL;
	struct reactor *r = NULL;

	st->status = -1;
	if (reactor_new(&r, 0) < 0)
		return NULL;
	if (netsrv_new(&no, &net) == 0 && nbdsrv_new(&o, &s) == 0 &&
	    nbdsrv_add_export(s, "", "a 4K-sector test disk", st->disk, false) == 0) {
		st->disk = NULL;
		if (nbdsrv_protocol(s, net, &p) == 0 && netsrv_serve_fds(net, p, st->fd, st->fd) == 0 &&
		    netsrv_start(net) == 0)
			st->status = netsrv_run(net) | nbdsrv_flush(s);
	}
	netsrv_free(net);
	nbdsrv_free(s);
	disk_unref(st->disk);
	reactor_free(r);
	return NULL;
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	ds_put_be64(h, NBDW_IHAVEOPT);
	ds_put_be32(h + 8, opt);
	ds_put_be32(h + 12, len);
	tu_write_full(fd, h, 16);
	if (len)
		tu_write_full(fd, data, len);
}

/* Reads one option reply; returns its type, data in @buf (room 4096). */
static uint32_t read_opt_reply(int fd, uint32_t want_opt, uint8_t *buf, uint32_t *len)
{
	uint8_t h[20];

	tu_read_full(fd, h, 20);
	assert_true(ds_get_be64(h) == NBDW_OPT_REPLY_MAGIC);
	assert_int_equal(ds_get_be32(h + 8), want_opt);
	*len = ds_get_be32(h + 16);
	assert_true(*len <= 4096);
	tu_read_full(fd, buf, *len);
	return ds_get_be32(h + 12);
}

static void info_go(int fd, uint32_t opt, bool want_bs)
{
	uint8_t d[10] = { 0 };   /* name length 0, name "", count, request */

	ds_put_be16(d + 4, want_bs ? 1 : 0);
	ds_put_be16(d + 6, NBDW_INFO_BLOCK_SIZE);
	send_opt(fd, opt, d, want_bs ? 8 : 6);
}

static void send_req(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off,
		     uint32_t len)
{
	uint8_t h[28];

	ds_put_be32(h, NBDW_REQUEST_MAGIC);
	ds_put_be16(h + 4, flags);
	ds_put_be16(h + 6, type);
	ds_put_be64(h + 8, cookie);
	ds_put_be64(h + 16, off);
	ds_put_be32(h + 24, len);
	tu_write_full(fd, h, 28);
}

/* Reads one structured chunk header (after its magic was checked). */
static void read_chunk(int fd, uint16_t *flags, uint16_t *type, uint64_t *cookie, uint32_t *len)
{
	uint8_t h[20];

	tu_read_full(fd, h, 20);
	assert_int_equal(ds_get_be32(h), NBDW_STRUCTURED_REPLY_MAGIC);
	*flags = ds_get_be16(h + 4);
	*type = ds_get_be16(h + 6);
	*cookie = ds_get_be64(h + 8);
	*len = ds_get_be32(h + 16);
}

static void test_nbdsrv_inprocess(void **state)
{
	struct mockdisk m;
	struct mockdisk_opts mo = { .sectors = 64, .sector_size = 4096, .fua = true };
	struct srv_thread st = { 0 };
	uint8_t buf[8192], greet[18], wbuf[4096];
	uint16_t flags, type;
	uint64_t cookie;
	uint32_t len, t;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	st.disk = mockdisk_new(&m, &mo);
	st.fd = sv[1];
	assert_int_equal(pthread_create(&st.thread, NULL, srv_main, &st), 0);

	/* Greeting and client flags. */
	tu_read_full(sv[0], greet, 18);
	assert_true(ds_get_be64(greet) == NBDW_INIT_PASSWD);
	assert_true(ds_get_be64(greet + 8) == NBDW_IHAVEOPT);
	assert_int_equal(ds_get_be16(greet + 16), NBDW_FLAG_FIXED_NEWSTYLE | NBDW_FLAG_NO_ZEROES);
	ds_put_be32(buf, NBDW_FLAG_C_FIXED_NEWSTYLE | NBDW_FLAG_C_NO_ZEROES);
	tu_write_full(sv[0], buf, 4);

	/* GO without asking for block sizes on a 4K-sector disk. */
	info_go(sv[0], NBDW_OPT_GO, false);
	t = read_opt_reply(sv[0], NBDW_OPT_GO, buf, &len);
	assert_int_equal(t, NBDW_REP_INFO);
	assert_int_equal(ds_get_be16(buf), NBDW_INFO_BLOCK_SIZE);
	assert_int_equal(ds_get_be32(buf + 2), 4096);
	t = read_opt_reply(sv[0], NBDW_OPT_GO, buf, &len);
	assert_int_equal(t, NBDW_REP_ERR_BLOCK_SIZE_REQD);

	/* INFO with block sizes: export info, block size, ACK. */
	info_go(sv[0], NBDW_OPT_INFO, true);
	t = read_opt_reply(sv[0], NBDW_OPT_INFO, buf, &len);
	assert_int_equal(t, NBDW_REP_INFO);
	assert_int_equal(ds_get_be16(buf), NBDW_INFO_EXPORT);
	assert_true(ds_get_be64(buf + 2) == 64 * 4096);
	assert_true(ds_get_be16(buf + 10) & NBDW_FLAG_SEND_FUA);
	assert_false(ds_get_be16(buf + 10) & NBDW_FLAG_SEND_DF);   /* no SR yet */
	t = read_opt_reply(sv[0], NBDW_OPT_INFO, buf, &len);
	assert_int_equal(ds_get_be16(buf), NBDW_INFO_BLOCK_SIZE);
	assert_int_equal(ds_get_be32(buf + 10), 32u << 20);
	assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_INFO, buf, &len), NBDW_REP_ACK);

	/* An unknown option with data, LIST with data, STARTTLS without TLS,
	 * SET_META_CONTEXT before structured replies. */
	send_opt(sv[0], 99, "hello", 5);
	assert_int_equal(read_opt_reply(sv[0], 99, buf, &len), NBDW_REP_ERR_UNSUP);
	send_opt(sv[0], NBDW_OPT_LIST, "x", 1);
	assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_LIST, buf, &len), NBDW_REP_ERR_INVALID);
	send_opt(sv[0], NBDW_OPT_STARTTLS, NULL, 0);
	assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_STARTTLS, buf, &len), NBDW_REP_ERR_POLICY);
	{
		uint8_t q[4 + 4 + 4 + 15];

		ds_put_be32(q, 0);
		ds_put_be32(q + 4, 1);
		ds_put_be32(q + 8, 15);
		memcpy(q + 12, "base:allocation", 15);
		send_opt(sv[0], NBDW_OPT_SET_META_CONTEXT, q, sizeof(q));
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_SET_META_CONTEXT, buf, &len),
				 NBDW_REP_ERR_INVALID);
		send_opt(sv[0], NBDW_OPT_STRUCTURED_REPLY, NULL, 0);
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_STRUCTURED_REPLY, buf, &len),
				 NBDW_REP_ACK);
		send_opt(sv[0], NBDW_OPT_STRUCTURED_REPLY, NULL, 0);
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_STRUCTURED_REPLY, buf, &len),
				 NBDW_REP_ERR_INVALID);
		send_opt(sv[0], NBDW_OPT_SET_META_CONTEXT, q, sizeof(q));
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_SET_META_CONTEXT, buf, &len),
				 NBDW_REP_META_CONTEXT);
		assert_int_equal(ds_get_be32(buf), 1);
		assert_memory_equal(buf + 4, "base:allocation", 15);
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_SET_META_CONTEXT, buf, &len),
				 NBDW_REP_ACK);
		/* A query length that runs past the option. */
		ds_put_be32(q + 8, 16);
		send_opt(sv[0], NBDW_OPT_LIST_META_CONTEXT, q, sizeof(q));
		assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_LIST_META_CONTEXT, buf, &len),
				 NBDW_REP_ERR_INVALID);
	}

	/* GO with block sizes enters transmission. */
	info_go(sv[0], NBDW_OPT_GO, true);
	t = read_opt_reply(sv[0], NBDW_OPT_GO, buf, &len);
	assert_int_equal(t, NBDW_REP_INFO);
	assert_true(ds_get_be16(buf + 10) & NBDW_FLAG_SEND_DF);
	assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_GO, buf, &len), NBDW_REP_INFO);
	assert_int_equal(read_opt_reply(sv[0], NBDW_OPT_GO, buf, &len), NBDW_REP_ACK);

	/* An unaligned read: a structured EINVAL. */
	send_req(sv[0], 0, NBDW_CMD_READ, 1, 512, 512);
	read_chunk(sv[0], &flags, &type, &cookie, &len);
	assert_int_equal(type, NBDW_REPLY_TYPE_ERROR);
	assert_true(flags & NBDW_REPLY_FLAG_DONE);
	assert_true(cookie == 1);
	tu_read_full(sv[0], buf, len);
	assert_int_equal(ds_get_be32(buf), NBDW_EINVAL);

	/* A FUA write, then the same data back. */
	for (unsigned i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 7 + 3);
	send_req(sv[0], NBDW_CMD_FLAG_FUA, NBDW_CMD_WRITE, 2, 4096, 4096);
	tu_write_full(sv[0], wbuf, sizeof(wbuf));
	tu_read_full(sv[0], buf, 16);
	assert_int_equal(ds_get_be32(buf), NBDW_SIMPLE_REPLY_MAGIC);
	assert_int_equal(ds_get_be32(buf + 4), 0);
	assert_true(ds_get_be64(buf + 8) == 2);
	send_req(sv[0], 0, NBDW_CMD_READ, 3, 4096, 4096);
	read_chunk(sv[0], &flags, &type, &cookie, &len);
	assert_int_equal(type, NBDW_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(len, 8 + 4096);
	tu_read_full(sv[0], buf, len);
	assert_true(ds_get_be64(buf) == 4096);
	assert_memory_equal(buf + 8, wbuf, 4096);

	/* Block status: one context, the dispatcher's "allocated" answer. */
	send_req(sv[0], 0, NBDW_CMD_BLOCK_STATUS, 4, 0, 8192);
	read_chunk(sv[0], &flags, &type, &cookie, &len);
	assert_int_equal(type, NBDW_REPLY_TYPE_BLOCK_STATUS);
	assert_true(flags & NBDW_REPLY_FLAG_DONE);
	assert_int_equal(len, 12);
	tu_read_full(sv[0], buf, len);
	assert_int_equal(ds_get_be32(buf), 1);
	assert_int_equal(ds_get_be32(buf + 4), 8192);
	assert_int_equal(ds_get_be32(buf + 8), 0);

	/* Unknown command, and a read past the end. */
	send_req(sv[0], 0, 42, 5, 0, 4096);
	read_chunk(sv[0], &flags, &type, &cookie, &len);
	assert_int_equal(type, NBDW_REPLY_TYPE_ERROR);
	tu_read_full(sv[0], buf, len);
	assert_int_equal(ds_get_be32(buf), NBDW_EINVAL);
	send_req(sv[0], 0, NBDW_CMD_WRITE_ZEROES, 6, 63 * 4096, 8192);
	read_chunk(sv[0], &flags, &type, &cookie, &len);
	tu_read_full(sv[0], buf, len);
	assert_int_equal(ds_get_be32(buf), NBDW_ENOSPC);

	/* DISC: the server closes the connection and, in stdio mode, stops. */
	send_req(sv[0], 0, NBDW_CMD_DISC, 7, 0, 0);
	assert_int_equal(read(sv[0], buf, 1), 0);
	close(sv[0]);
	assert_int_equal(pthread_join(st.thread, NULL), 0);
	assert_int_equal(st.status, 0);
	assert_int_equal(m.fua_writes, 1);
	assert_true(m.flushes >= 1);   /* the export is flushed at exit */
	mockdisk_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nbdsrv_errmap_table),
		cmocka_unit_test(test_nbdsrv_errmap_errno),
		cmocka_unit_test(test_nbdsrv_meta_match),
		cmocka_unit_test(test_nbdsrv_meta_encode),
		cmocka_unit_test(test_nbdsrv_psk_line),
		cmocka_unit_test(test_nbdsrv_psk_table_wipe),
		cmocka_unit_test(test_nbdsrv_inprocess),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
