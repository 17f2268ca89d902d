// SPDX-License-Identifier: MIT
//
// nbd-floor: the smallest NBD server that does the job, as a floor for
// the CPU a server spends per request on this machine (docs/bench-nbd.md).
// bench-nbd.sh runs it as the servers "floor-null" and "floor-mem".
//
//   nbd-floor SOCKET PIDFILE SIZE null|mem
//
// Fixed newstyle handshake (NBD protocol, "Newstyle negotiation"), one
// export of SIZE bytes, simple replies only (ABORT is acknowledged, every
// option other than EXPORT_NAME, INFO and GO is answered NBD_REP_ERR_UNSUP,
// so the client falls back to simple replies and no meta contexts). One thread per
// connection, blocking sockets: per pass one recv() of whatever has
// arrived, every complete request in it answered, all replies of the pass
// in one sendmsg(). Reads send straight from the disk's memory (no copy in
// user space), writes copy their payload into it once. "null" keeps no
// data: reads send zeroes, writes are dropped.
//
// Not a product: no TLS, no structured replies, no bounds on the number of
// connections. It exists so that a benchmark can say what a server with
// nothing but the socket work costs, next to diskstack and nbdkit.

#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define NBD_MAGIC 0x4e42444d41474943ULL
#define NBD_IHAVEOPT 0x49484156454f5054ULL
#define NBD_REP_MAGIC 0x3e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513U
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698U
#define NBD_FLAG_FIXED_NEWSTYLE 1
#define NBD_FLAG_NO_ZEROES 2
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_REP_ACK 1
#define NBD_REP_INFO 3
#define NBD_REP_ERR_UNSUP 0x80000001U
#define NBD_INFO_EXPORT 0
#define NBD_FLAG_HAS_FLAGS 1
#define NBD_FLAG_SEND_FLUSH 4
#define NBD_FLAG_SEND_FUA 8
#define NBD_FLAG_SEND_TRIM 32
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_EINVAL 22
#define NBD_ENOSPC 28

#define IN_CAP (4u << 20)   // bytes of requests taken in one pass
#define MAX_IO (32u << 20)  // largest read or write accepted
#define MAX_IOV 1024        // replies (two iovecs each) per sendmsg

static uint64_t disk_size;
static uint8_t *disk;  // NULL in "null" mode
static uint8_t *zeroes;  // MAX_IO bytes of zeroes for "null" reads

// Sends (OUT) or receives all LEN bytes of BUF; 0, or -1 when the peer
// is gone.
static int
xfer_all(int fd, void *buf, size_t len, int out)
{
	uint8_t *p = buf;

	for (;;) {
		ssize_t n;

		if (len == 0)
			return 0;
		n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, MSG_WAITALL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0 || errno != EINTR) {
			return -1;
		}
	}
}

#define send_all(fd, buf, len) xfer_all(fd, (void *)(buf), len, 1)
#define recv_all(fd, buf, len) xfer_all(fd, buf, len, 0)

// Reads and drops LEN bytes.
static int
drain(int fd, size_t len)
{
	uint8_t buf[65536];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);

		if (recv_all(fd, buf, n) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

static int
opt_reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	uint8_t h[20];
	uint64_t magic = htobe64(NBD_REP_MAGIC);
	uint32_t v;

	memcpy(h, &magic, 8);
	v = htobe32(opt);
	memcpy(h + 8, &v, 4);
	v = htobe32(type);
	memcpy(h + 12, &v, 4);
	v = htobe32(len);
	memcpy(h + 16, &v, 4);
	if (send_all(fd, h, sizeof(h)) < 0)
		return -1;
	return len > 0 ? send_all(fd, data, len) : 0;
}

static uint16_t
tx_flags(void)
{
	return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
	       NBD_FLAG_SEND_TRIM;
}

// Returns 0 when the client has chosen the export, -1 to close.
static int
handshake(int fd)
{
	uint8_t greet[18];
	uint64_t v64 = htobe64(NBD_MAGIC);
	uint16_t v16 = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	uint32_t cflags;

	memcpy(greet, &v64, 8);
	v64 = htobe64(NBD_IHAVEOPT);
	memcpy(greet + 8, &v64, 8);
	memcpy(greet + 16, &v16, 2);
	if (send_all(fd, greet, sizeof(greet)) < 0 || recv_all(fd, &cflags, 4) < 0)
		return -1;
	cflags = be32toh(cflags);
	for (;;) {
		uint8_t oh[16];
		uint32_t opt, len;
		uint8_t *data;

		if (recv_all(fd, oh, sizeof(oh)) < 0)
			return -1;
		memcpy(&v64, oh, 8);
		memcpy(&opt, oh + 8, 4);
		memcpy(&len, oh + 12, 4);
		opt = be32toh(opt);
		len = be32toh(len);
		if (be64toh(v64) != NBD_IHAVEOPT || len > 65536)
			return -1;
		data = malloc(len ? len : 1);
		if (data == NULL || recv_all(fd, data, len) < 0) {
			free(data);
			return -1;
		}
		free(data);
		if (opt == NBD_OPT_EXPORT_NAME) {
			uint8_t r[10 + 124] = {0};

			v64 = htobe64(disk_size);
			v16 = htobe16(tx_flags());
			memcpy(r, &v64, 8);
			memcpy(r + 8, &v16, 2);
			return send_all(fd, r, (cflags & NBD_FLAG_NO_ZEROES) ? 10 : sizeof(r));
		}
		if (opt == NBD_OPT_ABORT) {
			opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
			return -1;
		}
		if (opt == NBD_OPT_INFO || opt == NBD_OPT_GO) {
			uint8_t info[12];

			v16 = htobe16(NBD_INFO_EXPORT);
			memcpy(info, &v16, 2);
			v64 = htobe64(disk_size);
			memcpy(info + 2, &v64, 8);
			v16 = htobe16(tx_flags());
			memcpy(info + 10, &v16, 2);
			if (opt_reply(fd, opt, NBD_REP_INFO, info, sizeof(info)) < 0 ||
			    opt_reply(fd, opt, NBD_REP_ACK, NULL, 0) < 0)
				return -1;
			if (opt == NBD_OPT_GO)
				return 0;
			continue;
		}
		if (opt_reply(fd, opt, NBD_REP_ERR_UNSUP, NULL, 0) < 0)
			return -1;
	}
}

struct out {
	struct iovec iov[MAX_IOV];
	uint8_t hdr[MAX_IOV / 2][16];
	int n;
};

static int
out_flush(int fd, struct out *o)
{
	struct msghdr m = {.msg_iov = o->iov, .msg_iovlen = (size_t)o->n};

	while (m.msg_iovlen > 0) {
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		while (m.msg_iovlen > 0 && (size_t)n >= m.msg_iov->iov_len) {
			n -= (ssize_t)m.msg_iov->iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen > 0) {
			m.msg_iov->iov_base = (uint8_t *)m.msg_iov->iov_base + n;
			m.msg_iov->iov_len -= (size_t)n;
		}
	}
	o->n = 0;
	return 0;
}

static int
out_reply(int fd, struct out *o, uint64_t cookie, uint32_t err, const void *data,
	  uint32_t len)
{
	uint8_t *h;
	uint32_t v;

	if (o->n + 2 > MAX_IOV && out_flush(fd, o) < 0)
		return -1;
	h = o->hdr[o->n / 2];
	v = htobe32(NBD_SIMPLE_REPLY_MAGIC);
	memcpy(h, &v, 4);
	v = htobe32(err);
	memcpy(h + 4, &v, 4);
	memcpy(h + 8, &cookie, 8);  // opaque: sent back as received
	o->iov[o->n].iov_base = h;
	o->iov[o->n].iov_len = 16;
	o->n++;
	// Keep two slots per reply so that hdr[] indexes stay simple.
	o->iov[o->n].iov_base = (void *)data;
	o->iov[o->n].iov_len = data != NULL ? len : 0;
	o->n++;
	return 0;
}

static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *in = malloc(IN_CAP);
	struct out *o = calloc(1, sizeof(*o));
	size_t have = 0;

	if (in == NULL || o == NULL || handshake(fd) < 0)
		goto done;
	for (;;) {
		ssize_t n = recv(fd, in + have, IN_CAP - have, 0);
		size_t pos = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto done;
		have += (size_t)n;
		while (have - pos >= 28) {
			const uint8_t *r = in + pos;
			uint32_t magic, len;
			uint16_t type;
			uint64_t cookie, off;
			uint32_t err = 0;

			memcpy(&magic, r, 4);
			memcpy(&type, r + 6, 2);
			memcpy(&cookie, r + 8, 8);
			memcpy(&off, r + 16, 8);
			memcpy(&len, r + 24, 4);
			if (be32toh(magic) != NBD_REQUEST_MAGIC)
				goto done;
			type = be16toh(type);
			off = be64toh(off);
			len = be32toh(len);
			if (len > MAX_IO)
				goto done;
			if (off > disk_size || len > disk_size - off)
				err = type == NBD_CMD_WRITE ? NBD_ENOSPC : NBD_EINVAL;
			if (type == NBD_CMD_WRITE) {
				size_t got = have - pos - 28;

				if (got < len) {
					// Payload not all here: take the rest straight
					// into the disk, or drop it ("null", errors).
					if (disk != NULL && err == 0) {
						memcpy(disk + off, r + 28, got);
						if (recv_all(fd, disk + off + got, len - got) < 0)
							goto done;
					} else if (drain(fd, len - got) < 0) {
						goto done;
					}
					pos = have;
				} else {
					if (disk != NULL && err == 0)
						memcpy(disk + off, r + 28, len);
					pos += 28 + len;
				}
				if (out_reply(fd, o, cookie, err, NULL, 0) < 0)
					goto done;
				continue;
			}
			pos += 28;
			if (type == NBD_CMD_DISC) {
				// The replies to the requests before it go first.
				if (o->n > 0)
					(void)out_flush(fd, o);
				goto done;
			}
			if (type == NBD_CMD_READ && err == 0) {
				const uint8_t *src = disk != NULL ? disk + off : zeroes;

				if (out_reply(fd, o, cookie, 0, src, len) < 0)
					goto done;
			} else {
				if (type != NBD_CMD_READ && type != NBD_CMD_FLUSH &&
				    type != NBD_CMD_TRIM)
					err = NBD_EINVAL;
				if (out_reply(fd, o, cookie, err, NULL, 0) < 0)
					goto done;
			}
		}
		if (o->n > 0 && out_flush(fd, o) < 0)
			goto done;
		memmove(in, in + pos, have - pos);
		have -= pos;
	}
done:
	close(fd);
	free(in);
	free(o);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	FILE *pf;
	int lfd;

	if (argc != 5 || (strcmp(argv[4], "null") != 0 && strcmp(argv[4], "mem") != 0)) {
		fprintf(stderr, "usage: nbd-floor SOCKET PIDFILE SIZE null|mem\n");
		return 2;
	}
	disk_size = strtoull(argv[3], NULL, 0);
	if (disk_size == 0 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "nbd-floor: bad size or socket path\n");
		return 2;
	}
	zeroes = calloc(1, MAX_IO);
	if (strcmp(argv[4], "mem") == 0) {
		disk = mmap(NULL, disk_size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (disk == MAP_FAILED) {
			perror("nbd-floor: mmap");
			return 1;
		}
	}
	strcpy(sa.sun_path, argv[1]);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (zeroes == NULL || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 16) < 0) {
		perror("nbd-floor: listen");
		return 1;
	}
	pf = fopen(argv[2], "w");
	if (pf == NULL) {
		perror("nbd-floor: pidfile");
		return 1;
	}
	fprintf(pf, "%d\n", (int)getpid());
	fclose(pf);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("nbd-floor: accept");
			return 1;
		}
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
