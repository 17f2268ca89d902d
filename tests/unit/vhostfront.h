/* SPDX-License-Identifier: MIT */
/*
 * vhostfront.h: a host-side vhost-user front-end for tests (no QEMU): memfd
 * "guest memory" laid out like QEMU's pc machine (two regions of one memfd
 * around a hole at 0xa0000-0xc0000), split virtqueues the test fills as a
 * guest driver would, and the message sequence QEMU 7.2 sends for
 * vhost-user-blk (docs/vhost.md): realize, start, stop. Every helper
 * returns 0 or -errno and never fails the test itself, so tests can drive
 * the back-end into errors on purpose.
 *
 * Guest-physical layout: rings of queue q at 0x100000 + q * 0x10000,
 * indirect tables at 0x400000 + q * 0x100000 + head * 0x400 (64 entries),
 * and a data arena from 0x1000000 (vfront_alloc; vfront_arena_reset).
 */
#ifndef DISKSTACK_TESTS_VHOSTFRONT_H
#define DISKSTACK_TESTS_VHOSTFRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost/proto.h"

#define VFRONT_MAX_QUEUES 8
#define VFRONT_HOLE_START 0xa0000ull
#define VFRONT_HOLE_END 0xc0000ull

struct vfront;

struct vfront_opts {
	unsigned queues;                /* default 1 */
	uint16_t qsize;                 /* default 128; up to 32768 (more than 1024:
	                                 * at most 4 queues, 1024 descriptors used) */
	size_t mem_bytes;               /* default 64 MiB */
	bool no_event_idx;              /* do not ack EVENT_IDX */
	bool no_indirect;               /* do not ack INDIRECT_DESC (and never use it) */
	bool no_inflight;               /* skip GET/SET_INFLIGHT_FD */
	bool no_backend_channel;        /* skip SET_BACKEND_REQ_FD */
};

/* Creates a front-end over the connected socket @sock (owned from now on).
 * Returns 0 or -errno. */
int vfront_new(const struct vfront_opts *o, int sock, struct vfront **out);
/* Closes the socket (the back-end sees EOF) and frees. NULL allowed. */
void vfront_free(struct vfront *f);
/* Closes only the connection (the back-end sees EOF); guest memory and the
 * inflight buffer stay, as QEMU keeps them across a reconnect. */
void vfront_disconnect(struct vfront *f);
/* Connects again to the Unix socket @path (after vfront_disconnect). */
int vfront_reconnect(struct vfront *f, const char *path);
/* Connects to @path (a new socket). Returns a fd or -errno. */
int vfront_connect_unix(const char *path);

/* ---- messages ------------------------------------------------------------ */

/* Sends one message with @nfds fds. */
int vfront_send(struct vfront *f, uint32_t req, uint32_t flags, const void *payload,
		uint32_t size, const int *fds, unsigned nfds);
/* Receives one reply to @req into @payload (room @room); its size in
 * *@size, a passed fd in *@fd (if non-NULL; -1 when none). -EPROTO when it
 * is not a reply to @req; -ETIMEDOUT after 10 s. */
int vfront_recv(struct vfront *f, uint32_t req, void *payload, uint32_t room, uint32_t *size,
		int *fd);
/* Sends and, for GET_* requests and NEED_REPLY ones, waits for the reply
 * (a REPLY_ACK u64 must be 0, else -EIO). */
int vfront_msg(struct vfront *f, uint32_t req, uint32_t flags, const void *payload,
	       uint32_t size, const int *fds, unsigned nfds, void *reply, uint32_t room);
/* A u64 GET (GET_FEATURES, ...). */
int vfront_get_u64(struct vfront *f, uint32_t req, uint64_t *out);

/* ---- the QEMU 7.2 sequences ---------------------------------------------- */

/* Device realize: features, protocol features, queue count, back-end
 * channel, owner, call/err fds per queue, GET_CONFIG (kept in f->config). */
int vfront_realize(struct vfront *f);
/* Device start: SET_FEATURES (acked subset), inflight buffer, memory
 * table, then NUM/BASE/ADDR/KICK and ENABLE per queue. Rings are reset to
 * empty unless @keep_rings (a reconnect: the guest's rings stay). */
int vfront_start(struct vfront *f, bool keep_rings);
/* Device stop: ENABLE 0 and GET_VRING_BASE per queue; the bases in
 * @bases (room for the queue count; may be NULL). */
int vfront_stop(struct vfront *f, uint16_t *bases);

/* What realize learned and start acked. */
uint64_t vfront_features(struct vfront *f);          /* GET_FEATURES */
uint64_t vfront_protocol_features(struct vfront *f); /* acked protocol features */
uint64_t vfront_queue_num(struct vfront *f);         /* GET_QUEUE_NUM */
const uint8_t *vfront_config(struct vfront *f);      /* 60 bytes from GET_CONFIG */
int vfront_get_config(struct vfront *f, uint8_t *buf, uint32_t off, uint32_t len);

/* ---- guest memory and rings ------------------------------------------------ */

/* Allocates @len bytes of guest memory (8-byte aligned) in the arena.
 * Returns the guest-physical address (0 when full). */
uint64_t vfront_alloc(struct vfront *f, size_t len);
void vfront_arena_reset(struct vfront *f);
/* Our pointer to guest-physical @gpa (no checks: the test's own). */
void *vfront_ptr(struct vfront *f, uint64_t gpa);
/* Guest memory size (mem_bytes). */
size_t vfront_mem_bytes(struct vfront *f);
/* The guest memory's memfd (borrowed). */
int vfront_memfd(struct vfront *f);

/* Raw ring access for malformed chains. */
struct virtq_desc *vfront_desc(struct vfront *f, unsigned q);   /* qsize entries */
/* Publishes @head in the avail ring (does not kick). */
void vfront_avail_push(struct vfront *f, unsigned q, uint16_t head);
/* Writes the kick eventfd. */
void vfront_kick(struct vfront *f, unsigned q);
/* Our avail index and the used index the back-end published. */
uint16_t vfront_avail_idx(struct vfront *f, unsigned q);
uint16_t vfront_used_idx(struct vfront *f, unsigned q);
/* Guest-physical address of queue @q's indirect table for @head. */
uint64_t vfront_indirect_gpa(unsigned q, uint16_t head);

struct vfront_buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* Builds a chain of @n buffers from free descriptors (or one indirect
 * descriptor when @indirect and n <= 64), publishes it and kicks. Returns
 * the head (>= 0) or -ENOSPC. */
int vfront_add_chain(struct vfront *f, unsigned q, const struct vfront_buf *bufs, unsigned n,
		     bool indirect);
/* The same without the kick (a driver batching its kicks). */
int vfront_add_chain_nokick(struct vfront *f, unsigned q, const struct vfront_buf *bufs,
			    unsigned n, bool indirect);
/* True when the device wants a kick for what was published since our
 * avail index was @old_avail (EVENT_IDX's avail_event, else the used
 * ring's NO_NOTIFY flag), as a Linux driver decides. */
bool vfront_kick_needed(struct vfront *f, unsigned q, uint16_t old_avail);
/* Waits (up to 10 s) for the next used entry of queue @q; its id and len
 * in *@id / *@len, and frees its descriptors. -ETIMEDOUT if none. */
int vfront_wait_used(struct vfront *f, unsigned q, uint16_t *id, uint32_t *len);
/* True (once) when the back-end signalled queue @q's error eventfd. */
bool vfront_err_signalled(struct vfront *f, unsigned q);
/* Waits up to @ms for the error eventfd. */
bool vfront_wait_err(struct vfront *f, unsigned q, int ms);
/* Reads the call eventfd (0 when it was not signalled). */
uint64_t vfront_call_count(struct vfront *f, unsigned q);
/* Gives queue @q a new call eventfd (SET_VRING_CALL, as QEMU sends while
 * the ring runs) and waits for the back-end's REPLY_ACK; ours is closed.
 * -ENOTSUP without REPLY_ACK. */
int vfront_new_call(struct vfront *f, unsigned q);

/* ---- virtio-blk requests ---------------------------------------------------- */

/*
 * One virtio-blk request, synchronously: header (@type, @sector in
 * 512-byte units) readable, @len bytes of data (readable for OUT,
 * DISCARD, WRITE_ZEROES; writable for IN, GET_ID) from/to @buf, a
 * writable status byte. @indirect uses an indirect table. The status in
 * *@status, the used length in *@used_len (either may be NULL).
 */
int vfront_blk(struct vfront *f, unsigned q, uint32_t type, uint64_t sector, void *buf,
	       size_t len, bool indirect, uint8_t *status, uint32_t *used_len);
/* Starts the same without waiting; returns the head and keeps the
 * status byte's address in *@status_gpa. */
int vfront_blk_submit(struct vfront *f, unsigned q, uint32_t type, uint64_t sector,
		      uint64_t data_gpa, size_t len, bool indirect, uint64_t *status_gpa);

/* The inflight buffer as the front-end keeps it (NULL before the first
 * start with INFLIGHT_SHMFD); its size in *@bytes. */
void *vfront_inflight(struct vfront *f, uint64_t *bytes);
/* Writes used entry @pos / the used index as a back-end would (to set up
 * the state a killed back-end leaves behind). */
void vfront_set_used(struct vfront *f, unsigned q, uint16_t pos, uint32_t id, uint32_t len);
void vfront_set_used_idx(struct vfront *f, unsigned q, uint16_t idx);

/* Waits (up to 10 s) for a message on the back-end channel; its request
 * in *@req. */
int vfront_backend_recv(struct vfront *f, uint32_t *req);

#endif
