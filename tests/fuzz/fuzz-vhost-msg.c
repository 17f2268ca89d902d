/* SPDX-License-Identifier: MIT */
/*
 * fuzz-vhost-msg.c: libFuzzer target for the vhost-user message handler
 * (vhost/server.c): the input is a sequence of messages a front-end sends
 * — headers with any request, flags and size, payloads, and fds (eventfds
 * for kicks and calls, memfds for memory tables and inflight buffers, of a
 * size the input picks) — plus two pseudo-records that write bytes into
 * the last memfd sent (ring contents, as a guest would) and kick every
 * eventfd sent so far. Each input runs a fresh server (virtio-blk on a
 * 1 MiB mem: disk, 2 queues on one reactor thread) over a socketpair.
 *
 * After every record the target sends GET_QUEUE_NUM and reads replies up
 * to its answer, so messages are handled one at a time (the input never
 * produces request 17 itself). The server must not crash, hang (a reply
 * that does not come in 20 s aborts), leak memory (LeakSanitizer) or fds
 * (the target counts /proc/self/fd around each input), or touch memory
 * outside what it mapped: a memfd smaller than the region it backs gives
 * SIGBUS on an access past its end.
 *
 * Record: u8 request (0xfe: write to memory, 0xff: kick), u8 flags (bit
 * 7 set: bits 0-3 are the header's flags as given; else the header says
 * version 1, plus NEED_REPLY when bit 3 is set), u8 fds (bits 0-2 how
 * many, bit 3 memfds instead of eventfds), u8 memfd size in 64 KiB units
 * minus one (bits 0-5), u16 payload size, then that many payload bytes
 * (zeros past the end of the input). A size above VHU_MAX_PAYLOAD sends
 * the header alone (the server drops the connection). For 0xfe the
 * payload is u32 offset then the bytes to write.
 *
 * Seeds: tests/fuzz/vhost-msg-seeds.py writes QEMU 7.2's sequences.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/fuzz/fuzz-poll.h"
#include "vhost/blk.h"
#include "vhost/proto.h"
#include "vhost/vhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_EVENTFDS 32
#define FZ_REC_BYTES 6
#define FZ_WRITE_MEM 0xfe
#define FZ_KICK 0xff

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(getenv("FUZZ_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	return 0;
}

static unsigned fz_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

struct fz {
	int sock;
	bool gone;                      /* the server closed the connection */
	int efds[FZ_MAX_EVENTFDS];
	unsigned nefds;
	int last_memfd;
	size_t last_memfd_bytes;
	unsigned sentinels;             /* GET_QUEUE_NUM replies owed */
};

static void fz_send(struct fz *f, const uint8_t *hdr, const uint8_t *payload, size_t len,
		    const int *fds, unsigned nfds)
{
	if (vhu_sendmsg(f->sock, hdr, payload, len, fds, nfds) != 0)
		f->gone = true;
}

/* Reads one message (closing any fd it carries). Returns its request, or
 * -1 at EOF. */
static int fz_recv(struct fz *f)
{
	union {
		char buf[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} cm;
	static uint8_t buf[VHU_HDR_BYTES + VHU_MAX_PAYLOAD];
	size_t got = 0, want = VHU_HDR_BYTES;
	uint32_t req, flags, size;

	while (got < want) {
		struct iovec iov = { buf + got, want - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
		ssize_t n;

		if (fuzz_poll_in(f->sock, 20000) <= 0) {
			/* The server stopped answering: a hang. FUZZ_HANG_PAUSE
			 * keeps the process for a debugger. (A signal is not
			 * one: libFuzzer's timer interrupts the wait.) */
			if (getenv("FUZZ_HANG_PAUSE")) {
				fprintf(stderr, "fuzz-vhost-msg: hang, pid %d\n", (int)getpid());
				pause();
			}
			abort();
		}
		n = recvmsg(f->sock, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			int fds[VHU_MAX_FDS];
			size_t nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			memcpy(fds, CMSG_DATA(c), nf * sizeof(int));
			for (size_t i = 0; i < nf; i++)
				close(fds[i]);
		}
		got += (size_t)n;
		if (got == VHU_HDR_BYTES && want == VHU_HDR_BYTES) {
			memcpy(&req, buf, 4);
			memcpy(&flags, buf + 4, 4);
			memcpy(&size, buf + 8, 4);
			/* A reply is version 1 with the reply bit and fits. */
			if ((flags & ~(uint32_t)VHU_FLAG_VERSION_MASK) != VHU_FLAG_REPLY ||
			    (flags & VHU_FLAG_VERSION_MASK) != VHU_VERSION || size > VHU_MAX_PAYLOAD)
				abort();
			want += size;
		}
	}
	memcpy(&req, buf, 4);
	return (int)req;
}

/* Sends GET_QUEUE_NUM and reads up to its reply: every earlier message
 * has been handled when it comes. */
static void fz_sync(struct fz *f)
{
	uint8_t hdr[VHU_HDR_BYTES] = { 0 };
	uint32_t req = VHU_GET_QUEUE_NUM, flags = VHU_VERSION;

	if (f->gone)
		return;
	memcpy(hdr, &req, 4);
	memcpy(hdr + 4, &flags, 4);
	fz_send(f, hdr, NULL, 0, NULL, 0);
	while (!f->gone) {
		int r = fz_recv(f);

		if (r < 0)
			f->gone = true;
		else if (r == VHU_GET_QUEUE_NUM)
			return;
	}
}

static int fz_memfd(struct fz *f, size_t bytes)
{
	int fd = memfd_create("fuzz-guest", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		abort();
	if (f->last_memfd >= 0)
		close(f->last_memfd);
	f->last_memfd = dup(fd);
	f->last_memfd_bytes = bytes;
	return fd;
}

static void fz_write_mem(struct fz *f, const uint8_t *p, size_t len)
{
	uint32_t off;

	if (f->last_memfd < 0 || len < 4)
		return;
	memcpy(&off, p, 4);
	off %= (uint32_t)f->last_memfd_bytes;
	len -= 4;
	if (len > f->last_memfd_bytes - off)
		len = f->last_memfd_bytes - off;
	if (pwrite(f->last_memfd, p + 4, len, off) < 0)
		abort();
}

static void fz_kick(struct fz *f)
{
	for (unsigned i = 0; i < f->nefds; i++)
		(void)eventfd_write(f->efds[i], 1);
}

/* Sends one record; returns the bytes of input it used. */
static size_t fz_record(struct fz *f, const uint8_t *data, size_t size)
{
	static uint8_t payload[VHU_MAX_PAYLOAD];
	uint8_t hdr[VHU_HDR_BYTES];
	uint32_t req = data[0], flags, len = (uint32_t)data[4] | (uint32_t)data[5] << 8;
	size_t have = size - FZ_REC_BYTES, used;
	int fds[VHU_MAX_FDS];
	unsigned nfds = data[2] & 7;

	used = len < have ? len : have;
	if (req == FZ_KICK) {
		fz_kick(f);
		return FZ_REC_BYTES;
	}
	if (req == FZ_WRITE_MEM) {
		fz_write_mem(f, data + FZ_REC_BYTES, used);
		return FZ_REC_BYTES + used;
	}
	if (req == VHU_GET_QUEUE_NUM)
		req = 0;        /* the sync message's */
	flags = data[1] & 0x80 ? data[1] & 0xfu
			       : VHU_VERSION | (data[1] & 8 ? VHU_FLAG_NEED_REPLY : 0);
	memcpy(hdr, &req, 4);
	memcpy(hdr + 4, &flags, 4);
	memcpy(hdr + 8, &len, 4);
	for (unsigned i = 0; i < nfds; i++) {
		if (data[2] & 8) {
			fds[i] = fz_memfd(f, (size_t)((data[3] & 63) + 1) << 16);
		} else {
			fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			if (fds[i] < 0)
				abort();
			if (f->nefds < FZ_MAX_EVENTFDS)
				f->efds[f->nefds++] = dup(fds[i]);
		}
	}
	if (len > VHU_MAX_PAYLOAD) {
		fz_send(f, hdr, NULL, 0, fds, nfds);
	} else {
		memset(payload, 0, len);
		memcpy(payload, data + FZ_REC_BYTES, used);
		fz_send(f, hdr, payload, len, fds, nfds);
	}
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	return FZ_REC_BYTES + used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhostblk_opts bo = { .queues = 2 };
	struct vhostsrv_opts so = { .name = "fuzz", .ops = &vhostblk_ops, .queues = 2,
				    .threads = 1 };
	struct fz f = { .last_memfd = -1 };
	struct vhostblk *blk = NULL;
	struct vhostsrv *srv = NULL;
	struct disk *d = NULL;
	unsigned fds_before = fz_count_fds();
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (ramdisk_new(1 << 20, 512, false, &d, NULL, 0) < 0 || vhostblk_new(d, &bo, &blk) < 0)
		abort();
	so.dev = blk;
	if (vhostsrv_new(&so, &srv) < 0 || vhostsrv_serve_fd(srv, sv[1]) < 0 ||
	    vhostsrv_start(srv) < 0)
		abort();
	f.sock = sv[0];
	while (size >= FZ_REC_BYTES && !f.gone) {
		size_t n = fz_record(&f, data, size);

		data += n;
		size -= n;
		fz_sync(&f);
	}
	/* EOF: the server ends the session and, with no listener, stops. */
	close(f.sock);
	vhostsrv_wait(srv);
	vhostsrv_free(srv);
	vhostblk_free(blk);
	disk_unref(d);
	for (unsigned i = 0; i < f.nefds; i++)
		close(f.efds[i]);
	if (f.last_memfd >= 0)
		close(f.last_memfd);
	if (fz_count_fds() != fds_before)
		abort();        /* the server kept an fd it was given or made */
	return 0;
}
