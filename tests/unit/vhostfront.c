/* SPDX-License-Identifier: MIT */
/*
 * vhostfront.c: the test front-end (vhostfront.h).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/compiler.h"
#include "tests/unit/vhostfront.h"

#define BIT(n) (1ull << (n))
#define VF_TIMEOUT_MS 10000
#define VF_CHAIN_MAX 64
#define VF_ARENA_START 0x1000000ull
/* Descriptors the front-end uses: a ring of more entries (up to 32768)
 * uses only its first 1024, which a driver may do. */
#define VF_HEADS 1024u
/* Rings of up to VF_HEADS entries take 64 KiB each from 1 MiB on; larger
 * ones 1 MiB each from 12 MiB on (so at most VF_BIG_QUEUES of them), below
 * the arena and clear of the indirect tables (4 to 12 MiB). */
#define VF_BIG_QUEUES 4u

struct vfq {
	int kick, call, err;
	uint16_t avail_idx, last_used;
	uint16_t nfree;
	uint16_t free[VF_HEADS];        /* free descriptor indices */
	uint8_t nchain[VF_HEADS];
	uint16_t chain[VF_HEADS][VF_CHAIN_MAX];
};

struct vfront {
	struct vfront_opts o;
	int sock;
	int memfd;
	uint8_t *mem;
	uint64_t features, acked, proto, qnum;
	uint8_t config[VIRTIO_BLK_CFG_BYTES];
	int backend[2];
	int inflight_fd;
	struct vhu_inflight inflight;
	void *inflight_map;
	uint64_t arena;
	struct vfq q[VFRONT_MAX_QUEUES];
};

static bool vfront_big_rings(const struct vfront *f)
{
	return f->o.qsize > VF_HEADS;
}

static uint64_t vfront_ring_gpa(const struct vfront *f, unsigned q)
{
	if (vfront_big_rings(f))
		return 0xc00000 + (uint64_t)q * 0x100000;
	return 0x100000 + (uint64_t)q * 0x10000;
}

static uint64_t vfront_ring_bytes(const struct vfront *f)
{
	return vfront_big_rings(f) ? 0x100000 : 0x10000;
}

/* desc at 0, avail after 16 x the largest size of its class, used 4 KiB
 * after the avail ring's room (32768 entries: 0, 0x80000, 0x91000). */
#define DESC_GPA(f, q) vfront_ring_gpa(f, q)
#define AVAIL_GPA(f, q) (vfront_ring_gpa(f, q) + (vfront_big_rings(f) ? 0x80000 : 0x4000))
#define USED_GPA(f, q) (AVAIL_GPA(f, q) + (vfront_big_rings(f) ? 0x11000 : 0x1000))

uint64_t vfront_indirect_gpa(unsigned q, uint16_t head)
{
	return 0x400000 + (uint64_t)q * 0x100000 + (uint64_t)head * 0x400;
}

void *vfront_ptr(struct vfront *f, uint64_t gpa)
{
	return f->mem + gpa;
}

size_t vfront_mem_bytes(struct vfront *f)
{
	return f->o.mem_bytes;
}

int vfront_memfd(struct vfront *f)
{
	return f->memfd;
}

static uint16_t *vfront_avail(struct vfront *f, unsigned q)
{
	return vfront_ptr(f, AVAIL_GPA(f, q));
}

static uint8_t *vfront_used(struct vfront *f, unsigned q)
{
	return vfront_ptr(f, USED_GPA(f, q));
}

struct virtq_desc *vfront_desc(struct vfront *f, unsigned q)
{
	return vfront_ptr(f, DESC_GPA(f, q));
}

int vfront_connect_unix(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

int vfront_new(const struct vfront_opts *o, int sock, struct vfront **out)
{
	struct vfront *f = calloc(1, sizeof(*f));

	if (!f) {
		close(sock);
		return -ENOMEM;
	}
	f->o = *o;
	if (!f->o.queues)
		f->o.queues = 1;
	if (!f->o.qsize)
		f->o.qsize = 128;
	if (!f->o.mem_bytes)
		f->o.mem_bytes = 64 << 20;
	f->sock = sock;
	f->inflight_fd = -1;
	f->backend[0] = f->backend[1] = -1;
	/* Sealable, as QEMU's memory-backend-memfd makes it; the back-end
	 * adds F_SEAL_SHRINK (QEMU seals it itself). */
	f->memfd = memfd_create("vfront-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (f->o.queues > VFRONT_MAX_QUEUES || f->o.qsize > VIRTQ_MAX_SIZE ||
	    (f->o.qsize > VF_HEADS && f->o.queues > VF_BIG_QUEUES) || f->memfd < 0 ||
	    ftruncate(f->memfd, (off_t)f->o.mem_bytes) < 0) {
		vfront_free(f);
		return -EINVAL;
	}
	f->mem = mmap(NULL, f->o.mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	if (f->mem == MAP_FAILED) {
		f->mem = NULL;
		vfront_free(f);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < f->o.queues; i++) {
		f->q[i].kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		f->q[i].call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		f->q[i].err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	f->arena = VF_ARENA_START;
	*out = f;
	return 0;
}

void vfront_disconnect(struct vfront *f)
{
	if (f->sock >= 0)
		close(f->sock);
	f->sock = -1;
	if (f->backend[0] >= 0)
		close(f->backend[0]);
	f->backend[0] = -1;
}

int vfront_reconnect(struct vfront *f, const char *path)
{
	int fd = vfront_connect_unix(path);

	if (fd < 0)
		return fd;
	vfront_disconnect(f);
	f->sock = fd;
	return 0;
}

void vfront_free(struct vfront *f)
{
	if (!f)
		return;
	vfront_disconnect(f);
	for (unsigned i = 0; i < VFRONT_MAX_QUEUES; i++) {
		if (f->q[i].kick > 0)
			close(f->q[i].kick);
		if (f->q[i].call > 0)
			close(f->q[i].call);
		if (f->q[i].err > 0)
			close(f->q[i].err);
	}
	if (f->mem)
		munmap(f->mem, f->o.mem_bytes);
	if (f->memfd >= 0)
		close(f->memfd);
	if (f->inflight_fd >= 0)
		close(f->inflight_fd);
	if (f->inflight_map)
		munmap(f->inflight_map, f->inflight.mmap_size);
	free(f);
}

/* ---- messages ------------------------------------------------------------ */

static int vfront_sendmsg(int sock, uint32_t req, uint32_t flags, const void *payload,
			  uint32_t size, const int *fds, unsigned nfds)
{
	uint8_t hdr[VHU_HDR_BYTES];

	flags |= VHU_VERSION;
	memcpy(hdr, &req, 4);
	memcpy(hdr + 4, &flags, 4);
	memcpy(hdr + 8, &size, 4);
	return vhu_sendmsg(sock, hdr, payload, size, fds, nfds);
}

int vfront_send(struct vfront *f, uint32_t req, uint32_t flags, const void *payload,
		uint32_t size, const int *fds, unsigned nfds)
{
	return vfront_sendmsg(f->sock, req, flags, payload, size, fds, nfds);
}

static int vfront_wait_fd(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, ms);

	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

/* Closes the fd a failed receive took, so that no caller leaks it. */
static int vfront_drop_fd(int *fd, int ret)
{
	if (fd && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

/* Reads exactly @len bytes (the first segment may carry one fd; on an
 * error, none is kept). */
static int vfront_read(int sock, void *buf, size_t len, int *fd)
{
	size_t got = 0;

	if (fd)
		*fd = -1;
	while (got < len) {
		int fds[VHU_MAX_FDS];
		unsigned nfds = 0;
		ssize_t n;
		int ret;

		if ((ret = vfront_wait_fd(sock, VF_TIMEOUT_MS)) < 0)
			return vfront_drop_fd(fd, ret);
		n = vhu_recvmsg(sock, (uint8_t *)buf + got, len - got, 0, fds, &nfds);
		for (unsigned i = 0; i < nfds; i++) {
			if (fd && *fd < 0)
				*fd = fds[i];
			else
				close(fds[i]);
		}
		if (n < 0)
			return vfront_drop_fd(fd, (int)n);
		if (n == 0)
			return vfront_drop_fd(fd, -ECONNRESET);
		got += (size_t)n;
	}
	return 0;
}

int vfront_recv(struct vfront *f, uint32_t req, void *payload, uint32_t room, uint32_t *size,
		int *fd)
{
	uint8_t hdr[VHU_HDR_BYTES], junk[VHU_MAX_PAYLOAD];
	uint32_t r, flags, sz;
	int ret;

	if ((ret = vfront_read(f->sock, hdr, sizeof(hdr), fd)) < 0)
		return ret;
	memcpy(&r, hdr, 4);
	memcpy(&flags, hdr + 4, 4);
	memcpy(&sz, hdr + 8, 4);
	if (sz > VHU_MAX_PAYLOAD)
		return vfront_drop_fd(fd, -EPROTO);
	if (sz && (ret = vfront_read(f->sock, junk, sz, NULL)) < 0)
		return vfront_drop_fd(fd, ret);
	if (r != req || !(flags & VHU_FLAG_REPLY) || (flags & 3) != VHU_VERSION)
		return vfront_drop_fd(fd, -EPROTO);
	memcpy(payload, junk, MIN(sz, room));
	if (size)
		*size = sz;
	return 0;
}

static bool vfront_is_get(uint32_t req)
{
	return req == VHU_GET_FEATURES || req == VHU_GET_PROTOCOL_FEATURES ||
	       req == VHU_GET_VRING_BASE || req == VHU_GET_QUEUE_NUM || req == VHU_GET_CONFIG ||
	       req == VHU_GET_INFLIGHT_FD || req == VHU_GET_MAX_MEM_SLOTS;
}

int vfront_msg(struct vfront *f, uint32_t req, uint32_t flags, const void *payload,
	       uint32_t size, const int *fds, unsigned nfds, void *reply, uint32_t room)
{
	uint64_t ack = 0;
	int ret = vfront_send(f, req, flags, payload, size, fds, nfds);

	if (ret < 0)
		return ret;
	if (vfront_is_get(req))
		return vfront_recv(f, req, reply, room, NULL, NULL);
	if ((flags & VHU_FLAG_NEED_REPLY) && (f->proto & BIT(VHU_PROTO_REPLY_ACK))) {
		if ((ret = vfront_recv(f, req, &ack, sizeof(ack), NULL, NULL)) < 0)
			return ret;
		return ack == 0 ? 0 : -EIO;
	}
	return 0;
}

int vfront_get_u64(struct vfront *f, uint32_t req, uint64_t *out)
{
	*out = 0;
	return vfront_msg(f, req, 0, NULL, 0, NULL, 0, out, sizeof(*out));
}

static int vfront_u64(struct vfront *f, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
	return vfront_msg(f, req, 0, &v, sizeof(v), fds, nfds, NULL, 0);
}

static int vfront_state(struct vfront *f, uint32_t req, uint32_t index, uint32_t num)
{
	struct vhu_vring_state st = { index, num };

	return vfront_msg(f, req, 0, &st, sizeof(st), NULL, 0, NULL, 0);
}

/* ---- sequences -------------------------------------------------------------- */

uint64_t vfront_features(struct vfront *f)
{
	return f->features;
}

uint64_t vfront_protocol_features(struct vfront *f)
{
	return f->proto;
}

uint64_t vfront_queue_num(struct vfront *f)
{
	return f->qnum;
}

const uint8_t *vfront_config(struct vfront *f)
{
	return f->config;
}

int vfront_get_config(struct vfront *f, uint8_t *buf, uint32_t off, uint32_t len)
{
	uint8_t msg[VHU_CONFIG_HDR_BYTES + VHU_CONFIG_MAX];
	uint32_t size = 0;
	int ret;

	if (len > VHU_CONFIG_MAX)
		return -EINVAL;
	memset(msg, 0, sizeof(msg));
	memcpy(msg, &off, 4);
	memcpy(msg + 4, &len, 4);
	if ((ret = vfront_send(f, VHU_GET_CONFIG, 0, msg, VHU_CONFIG_HDR_BYTES + len, NULL, 0)) < 0 ||
	    (ret = vfront_recv(f, VHU_GET_CONFIG, msg, sizeof(msg), &size, NULL)) < 0)
		return ret;
	if (size != VHU_CONFIG_HDR_BYTES + len)
		return -EIO;
	memcpy(buf, msg + VHU_CONFIG_HDR_BYTES, len);
	return 0;
}

int vfront_realize(struct vfront *f)
{
	uint64_t v;
	int ret;

	if ((ret = vfront_get_u64(f, VHU_GET_FEATURES, &f->features)) < 0)
		return ret;
	if (!(f->features & BIT(VHU_F_PROTOCOL_FEATURES)))
		return -ENOTSUP;
	if ((ret = vfront_get_u64(f, VHU_GET_PROTOCOL_FEATURES, &v)) < 0)
		return ret;
	/* QEMU 7.2 keeps the bits it knows (0-16). */
	f->proto = v & 0x1ffff;
	if (f->o.no_inflight)
		f->proto &= ~BIT(VHU_PROTO_INFLIGHT_SHMFD);
	if (f->o.no_backend_channel)
		f->proto &= ~BIT(VHU_PROTO_BACKEND_REQ);
	if ((ret = vfront_u64(f, VHU_SET_PROTOCOL_FEATURES, f->proto, NULL, 0)) < 0)
		return ret;
	if (f->proto & BIT(VHU_PROTO_MQ)) {
		if ((ret = vfront_get_u64(f, VHU_GET_QUEUE_NUM, &f->qnum)) < 0)
			return ret;
		if (f->qnum < f->o.queues)
			return -ERANGE;
	}
	if (f->proto & BIT(VHU_PROTO_BACKEND_REQ)) {
		if (f->backend[0] >= 0)
			close(f->backend[0]);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->backend) < 0)
			return -errno;
		ret = vfront_msg(f, VHU_SET_BACKEND_REQ_FD, VHU_FLAG_NEED_REPLY, NULL, 0,
				 &f->backend[1], 1, NULL, 0);
		close(f->backend[1]);
		f->backend[1] = -1;
		if (ret < 0)
			return ret;
	}
	if ((ret = vfront_msg(f, VHU_SET_OWNER, 0, NULL, 0, NULL, 0, NULL, 0)) < 0 ||
	    (ret = vfront_get_u64(f, VHU_GET_FEATURES, &v)) < 0)
		return ret;
	for (unsigned i = 0; i < f->o.queues; i++) {
		if ((ret = vfront_u64(f, VHU_SET_VRING_CALL, i, &f->q[i].call, 1)) < 0 ||
		    (ret = vfront_u64(f, VHU_SET_VRING_ERR, i, &f->q[i].err, 1)) < 0)
			return ret;
	}
	if (f->proto & BIT(VHU_PROTO_CONFIG))
		return vfront_get_config(f, f->config, 0, sizeof(f->config));
	return 0;
}

static void vfront_ring_reset(struct vfront *f, unsigned q)
{
	struct vfq *vq = &f->q[q];

	memset(vfront_ptr(f, vfront_ring_gpa(f, q)), 0, vfront_ring_bytes(f));
	vq->avail_idx = vq->last_used = 0;
	vq->nfree = (uint16_t)(f->o.qsize < VF_HEADS ? f->o.qsize : VF_HEADS);
	for (uint16_t i = 0; i < vq->nfree; i++)
		vq->free[i] = (uint16_t)(vq->nfree - 1 - i);
}

int vfront_start(struct vfront *f, bool keep_rings)
{
	uint64_t acked = f->features & (BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_INDIRECT_DESC) |
					BIT(VIRTIO_F_EVENT_IDX) | BIT(VHU_F_PROTOCOL_FEATURES) |
					0xffffffull);
	struct vhu_mem_table mt;
	int fds[2] = { f->memfd, f->memfd }, ret;

	if (f->o.no_event_idx)
		acked &= ~BIT(VIRTIO_F_EVENT_IDX);
	if (f->o.no_indirect)
		acked &= ~BIT(VIRTIO_F_INDIRECT_DESC);
	f->acked = acked;
	if ((ret = vfront_u64(f, VHU_SET_FEATURES, acked, NULL, 0)) < 0)
		return ret;
	if (!keep_rings && f->inflight_fd >= 0) {
		/* QEMU frees the inflight buffer at a virtio reset and asks
		 * for a new one at the next start. */
		close(f->inflight_fd);
		f->inflight_fd = -1;
		munmap(f->inflight_map, f->inflight.mmap_size);
		f->inflight_map = NULL;
	}
	if (f->proto & BIT(VHU_PROTO_INFLIGHT_SHMFD)) {
		if (f->inflight_fd < 0) {
			struct vhu_inflight in = { .num_queues = (uint16_t)f->o.queues,
						   .queue_size = f->o.qsize };

			if ((ret = vfront_send(f, VHU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0)) < 0 ||
			    (ret = vfront_recv(f, VHU_GET_INFLIGHT_FD, &f->inflight,
					       sizeof(f->inflight), NULL, &f->inflight_fd)) < 0)
				return ret;
			if (f->inflight_fd < 0)
				return -EPROTO;
			f->inflight_map = mmap(NULL, f->inflight.mmap_size, PROT_READ | PROT_WRITE,
					       MAP_SHARED, f->inflight_fd, 0);
			if (f->inflight_map == MAP_FAILED) {
				f->inflight_map = NULL;
				return -errno;
			}
		}
		if ((ret = vfront_msg(f, VHU_SET_INFLIGHT_FD, 0, &f->inflight, sizeof(f->inflight),
				      &f->inflight_fd, 1, NULL, 0)) < 0)
			return ret;
	}
	for (unsigned i = 0; i < f->o.queues; i++)
		if ((ret = vfront_u64(f, VHU_SET_VRING_CALL, i, &f->q[i].call, 1)) < 0)
			return ret;
	if ((ret = vfront_u64(f, VHU_SET_FEATURES, acked, NULL, 0)) < 0)
		return ret;
	memset(&mt, 0, sizeof(mt));
	mt.nregions = 2;
	mt.regions[0] = (struct vhu_region){ 0, VFRONT_HOLE_START, (uintptr_t)f->mem, 0 };
	mt.regions[1] = (struct vhu_region){ VFRONT_HOLE_END, f->o.mem_bytes - VFRONT_HOLE_END,
					     (uintptr_t)f->mem + VFRONT_HOLE_END, VFRONT_HOLE_END };
	if ((ret = vfront_msg(f, VHU_SET_MEM_TABLE, VHU_FLAG_NEED_REPLY, &mt, 8 + 2 * 32, fds, 2,
			      NULL, 0)) < 0)
		return ret;
	for (unsigned i = 0; i < f->o.queues; i++) {
		struct vhu_vring_addr a = {
			.index = i,
			.desc_user_addr = (uintptr_t)vfront_ptr(f, DESC_GPA(f, i)),
			.used_user_addr = (uintptr_t)vfront_ptr(f, USED_GPA(f, i)),
			.avail_user_addr = (uintptr_t)vfront_ptr(f, AVAIL_GPA(f, i)),
		};
		uint16_t base;

		if (!keep_rings)
			vfront_ring_reset(f, i);
		/* After a reconnect QEMU restarts at the used index. */
		base = keep_rings ? vfront_used_idx(f, i) : 0;
		if ((ret = vfront_state(f, VHU_SET_VRING_NUM, i, f->o.qsize)) < 0 ||
		    (ret = vfront_state(f, VHU_SET_VRING_BASE, i, base)) < 0 ||
		    (ret = vfront_msg(f, VHU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0, NULL, 0)) < 0 ||
		    (ret = vfront_u64(f, VHU_SET_VRING_KICK, i, &f->q[i].kick, 1)) < 0)
			return ret;
	}
	for (unsigned i = 0; i < f->o.queues; i++)
		if ((ret = vfront_state(f, VHU_SET_VRING_ENABLE, i, 1)) < 0)
			return ret;
	return 0;
}

int vfront_stop(struct vfront *f, uint16_t *bases)
{
	int ret;

	for (unsigned i = 0; i < f->o.queues; i++)
		if ((ret = vfront_state(f, VHU_SET_VRING_ENABLE, i, 0)) < 0)
			return ret;
	for (unsigned i = 0; i < f->o.queues; i++) {
		struct vhu_vring_state st = { i, 0 };

		if ((ret = vfront_msg(f, VHU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0, &st,
				      sizeof(st))) < 0)
			return ret;
		if (st.index != i)
			return -EPROTO;
		if (bases)
			bases[i] = (uint16_t)st.num;
	}
	return 0;
}

/* ---- rings ------------------------------------------------------------------- */

uint64_t vfront_alloc(struct vfront *f, size_t len)
{
	uint64_t gpa = f->arena;

	if (len > f->o.mem_bytes || gpa > f->o.mem_bytes - len)
		return 0;
	f->arena = ROUND_UP(gpa + len, 8);
	return gpa;
}

void vfront_arena_reset(struct vfront *f)
{
	f->arena = VF_ARENA_START;
}

uint16_t vfront_avail_idx(struct vfront *f, unsigned q)
{
	return f->q[q].avail_idx;
}

uint16_t vfront_used_idx(struct vfront *f, unsigned q)
{
	return __atomic_load_n((uint16_t *)(vfront_used(f, q) + 2), __ATOMIC_ACQUIRE);
}

void vfront_avail_push(struct vfront *f, unsigned q, uint16_t head)
{
	uint16_t *avail = vfront_avail(f, q);
	struct vfq *vq = &f->q[q];

	avail[2 + (vq->avail_idx % f->o.qsize)] = head;
	vq->avail_idx++;
	__atomic_store_n(&avail[1], vq->avail_idx, __ATOMIC_RELEASE);
}

void vfront_kick(struct vfront *f, unsigned q)
{
	(void)eventfd_write(f->q[q].kick, 1);
}

int vfront_add_chain(struct vfront *f, unsigned q, const struct vfront_buf *bufs, unsigned n,
		     bool indirect)
{
	int head = vfront_add_chain_nokick(f, q, bufs, n, indirect);

	if (head >= 0)
		vfront_kick(f, q);
	return head;
}

bool vfront_kick_needed(struct vfront *f, unsigned q, uint16_t old_avail)
{
	const uint8_t *used = vfront_used(f, q);
	uint16_t now = f->q[q].avail_idx, event, flags;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(f->acked & BIT(VIRTIO_F_EVENT_IDX))) {
		flags = __atomic_load_n((const uint16_t *)(const void *)used, __ATOMIC_ACQUIRE);
		return !(flags & VIRTQ_USED_F_NO_NOTIFY);
	}
	/* virtio 1.2 §2.7.10: avail_event follows the used ring. */
	event = __atomic_load_n((const uint16_t *)(const void *)(used + 4 + 8 * f->o.qsize),
				__ATOMIC_ACQUIRE);
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old_avail);
}

int vfront_add_chain_nokick(struct vfront *f, unsigned q, const struct vfront_buf *bufs,
			    unsigned n, bool indirect)
{
	struct vfq *vq = &f->q[q];
	struct virtq_desc *desc = vfront_desc(f, q);
	unsigned need = indirect ? 1 : n;
	uint16_t head;

	if (n == 0 || n > VF_CHAIN_MAX || vq->nfree < need)
		return -ENOSPC;
	if (indirect) {
		struct virtq_desc *table;

		head = vq->free[--vq->nfree];
		table = vfront_ptr(f, vfront_indirect_gpa(q, head));
		for (unsigned i = 0; i < n; i++)
			table[i] = (struct virtq_desc){
				.addr = bufs[i].gpa, .len = bufs[i].len,
				.flags = (uint16_t)((bufs[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
						    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
				.next = (uint16_t)(i + 1 < n ? i + 1 : 0) };
		desc[head] = (struct virtq_desc){ .addr = vfront_indirect_gpa(q, head),
						  .len = n * 16, .flags = VIRTQ_DESC_F_INDIRECT };
		vq->nchain[head] = 1;
		vq->chain[head][0] = head;
	} else {
		uint16_t idx[VF_CHAIN_MAX];

		for (unsigned i = 0; i < n; i++)
			idx[i] = vq->free[--vq->nfree];
		head = idx[0];
		for (unsigned i = 0; i < n; i++) {
			desc[idx[i]] = (struct virtq_desc){
				.addr = bufs[i].gpa, .len = bufs[i].len,
				.flags = (uint16_t)((bufs[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
						    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
				.next = i + 1 < n ? idx[i + 1] : 0 };
			vq->chain[head][i] = idx[i];
		}
		vq->nchain[head] = (uint8_t)n;
	}
	vfront_avail_push(f, q, head);
	return head;
}

uint64_t vfront_call_count(struct vfront *f, unsigned q)
{
	eventfd_t v = 0;

	if (eventfd_read(f->q[q].call, &v) < 0)
		return 0;
	return v;
}

int vfront_new_call(struct vfront *f, unsigned q)
{
	uint64_t v = q;
	int fd, ret;

	if (!(f->proto & BIT(VHU_PROTO_REPLY_ACK)))
		return -ENOTSUP;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = vfront_msg(f, VHU_SET_VRING_CALL, VHU_FLAG_NEED_REPLY, &v, sizeof(v), &fd, 1, NULL, 0);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	close(f->q[q].call);
	f->q[q].call = fd;
	return 0;
}

int vfront_wait_used(struct vfront *f, unsigned q, uint16_t *id, uint32_t *len)
{
	struct vfq *vq = &f->q[q];
	uint16_t *avail = vfront_avail(f, q);

	for (;;) {
		if (vfront_used_idx(f, q) != vq->last_used) {
			struct virtq_used_elem e;

			memcpy(&e, vfront_used(f, q) + 4 + 8 * (vq->last_used % f->o.qsize), sizeof(e));
			vq->last_used++;
			if (e.id < MIN(f->o.qsize, VF_HEADS)) {
				/* Give the chain's descriptors back. */
				for (unsigned i = 0; i < vq->nchain[e.id]; i++)
					vq->free[vq->nfree++] = vq->chain[e.id][i];
				vq->nchain[e.id] = 0;
			}
			if (id)
				*id = (uint16_t)e.id;
			if (len)
				*len = e.len;
			return 0;
		}
		/* EVENT_IDX: interrupt us when the used index passes what we
		 * have seen (used_event lives after the avail ring). */
		__atomic_store_n(&avail[2 + f->o.qsize], vq->last_used, __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (vfront_used_idx(f, q) != vq->last_used)
			continue;
		if (vfront_wait_fd(vq->call, VF_TIMEOUT_MS) < 0)
			return -ETIMEDOUT;
		(void)vfront_call_count(f, q);
	}
}

bool vfront_err_signalled(struct vfront *f, unsigned q)
{
	eventfd_t v = 0;

	return eventfd_read(f->q[q].err, &v) == 0 && v > 0;
}

bool vfront_wait_err(struct vfront *f, unsigned q, int ms)
{
	return vfront_wait_fd(f->q[q].err, ms) == 0 && vfront_err_signalled(f, q);
}

/* ---- virtio-blk -------------------------------------------------------------- */

static bool vfront_blk_data_writable(uint32_t type)
{
	return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
}

int vfront_blk_submit(struct vfront *f, unsigned q, uint32_t type, uint64_t sector,
		      uint64_t data_gpa, size_t len, bool indirect, uint64_t *status_gpa)
{
	uint64_t hdr = vfront_alloc(f, 16), st = vfront_alloc(f, 1);
	struct vfront_buf bufs[3];
	unsigned n = 0;
	uint8_t *h;

	if (!hdr || !st)
		return -ENOSPC;
	h = vfront_ptr(f, hdr);
	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)vfront_ptr(f, st) = 0xee;
	bufs[n++] = (struct vfront_buf){ hdr, 16, false };
	if (len)
		bufs[n++] = (struct vfront_buf){ data_gpa, (uint32_t)len,
						 vfront_blk_data_writable(type) };
	bufs[n++] = (struct vfront_buf){ st, 1, true };
	*status_gpa = st;
	return vfront_add_chain(f, q, bufs, n, indirect && !f->o.no_indirect);
}

int vfront_blk(struct vfront *f, unsigned q, uint32_t type, uint64_t sector, void *buf,
	       size_t len, bool indirect, uint8_t *status, uint32_t *used_len)
{
	uint64_t data = 0, st;
	uint16_t id;
	uint32_t ulen;
	int head, ret;

	if (f->arena + len + 64 > f->o.mem_bytes)
		vfront_arena_reset(f);
	if (len && !(data = vfront_alloc(f, len)))
		return -ENOSPC;
	if (len && !vfront_blk_data_writable(type))
		memcpy(vfront_ptr(f, data), buf, len);
	else if (len)
		memset(vfront_ptr(f, data), 0xa5, len);
	head = vfront_blk_submit(f, q, type, sector, data, len, indirect, &st);
	if (head < 0)
		return head;
	if ((ret = vfront_wait_used(f, q, &id, &ulen)) < 0)
		return ret;
	if (id != head)
		return -EPROTO;
	if (len && vfront_blk_data_writable(type))
		memcpy(buf, vfront_ptr(f, data), len);
	if (status)
		*status = *(uint8_t *)vfront_ptr(f, st);
	if (used_len)
		*used_len = ulen;
	return 0;
}

int vfront_backend_recv(struct vfront *f, uint32_t *req)
{
	uint8_t hdr[VHU_HDR_BYTES], payload[VHU_MAX_PAYLOAD];
	uint32_t flags, size;
	int ret;

	if (f->backend[0] < 0)
		return -ENOTCONN;
	if ((ret = vfront_read(f->backend[0], hdr, sizeof(hdr), NULL)) < 0)
		return ret;
	memcpy(req, hdr, 4);
	memcpy(&flags, hdr + 4, 4);
	memcpy(&size, hdr + 8, 4);
	if (size > sizeof(payload))
		return -EPROTO;
	if (size && (ret = vfront_read(f->backend[0], payload, size, NULL)) < 0)
		return ret;
	if (flags & VHU_FLAG_NEED_REPLY) {
		uint64_t ok = 0;

		return vfront_sendmsg(f->backend[0], *req, VHU_FLAG_REPLY, &ok, sizeof(ok), NULL, 0);
	}
	return 0;
}

void *vfront_inflight(struct vfront *f, uint64_t *bytes)
{
	if (bytes)
		*bytes = f->inflight_map ? f->inflight.mmap_size : 0;
	return f->inflight_map;
}

void vfront_set_used(struct vfront *f, unsigned q, uint16_t pos, uint32_t id, uint32_t len)
{
	struct virtq_used_elem e = { id, len };

	memcpy(vfront_used(f, q) + 4 + 8 * (pos % f->o.qsize), &e, sizeof(e));
}

void vfront_set_used_idx(struct vfront *f, unsigned q, uint16_t idx)
{
	__atomic_store_n((uint16_t *)(vfront_used(f, q) + 2), idx, __ATOMIC_RELEASE);
}
