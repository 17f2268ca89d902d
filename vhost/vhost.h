/* SPDX-License-Identifier: MIT */
/*
 * vhost.h: the vhost-user back-end library (libdsvhost.a, docs/vhost.md).
 * A server speaks the vhost-user protocol (QEMU's docs/interop/vhost-user.rst)
 * on a Unix socket to one front-end at a time and runs the device's
 * virtqueues on reactor threads; a device (virtio-blk in blk.c,
 * virtio-scsi in scsi.c, later NVMe over UML virt-pci) plugs in through
 * struct vhost_dev_ops and sees only requests made of guest-memory iovecs.
 *
 * Notes on the design
 * -------------------
 * - Threads: one control thread reads the socket and owns the session
 *   state (features, memory table, ring configuration); one reactor thread
 *   per queue group runs the rings (queue q on thread q % threads, so with
 *   threads == queues each queue has its own thread). A ring is handed to
 *   its thread when it can run (memory, size, addresses, kick fd, enabled)
 *   and taken back — its requests finished, its thread no longer touching
 *   it — before anything it uses changes. The data path takes no lock.
 * - Kicks are eventfd reads armed on the ring's reactor; interrupts are
 *   eventfd writes, batched once per reactor pass and suppressed with
 *   EVENT_IDX (vring.h).
 * - Guest memory is mapped once per SET_MEM_TABLE (mem.h); requests carry
 *   pointers straight into it, so a disk reads and writes guest buffers
 *   with no bounce copy.
 * - A chain that breaks the virtqueue rules stops its ring (vring.h) and
 *   signals the ring's error eventfd (SET_VRING_ERR); the ring stays
 *   stopped until the front-end restarts it (GET_VRING_BASE, then a new
 *   kick fd), as after a device reset.
 * - Reconnect: when the front-end goes away every ring is stopped, memory
 *   unmapped and fds closed, and the server accepts the next connection.
 *   With INFLIGHT_SHMFD the in-flight heads survive in the front-end's
 *   buffer, so a new back-end process resubmits them (vring.h).
 */
#ifndef DISKSTACK_VHOST_VHOST_H
#define DISKSTACK_VHOST_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct reactor;
struct vhostmem;
struct vhostsrv;

/* Queues a server can have (GET_QUEUE_NUM answers the configured count). */
#define VHOSTSRV_MAX_QUEUES 64

/*
 * One request handed to a device: device-readable buffers iov[0, out_cnt),
 * then device-writable ones. The buffers point into guest memory (the
 * guest may change readable ones under us: copy what is parsed). Owned by
 * the queue until the device calls vhost_req_complete.
 */
struct vhost_req {
	uint16_t qidx;                  /* the virtqueue */
	uint16_t head;                  /* descriptor head (for logs) */
	struct reactor *reactor;        /* the queue's reactor: submit disk I/O here */
	const struct iovec *iov;        /* out_cnt + in_cnt entries */
	unsigned out_cnt, in_cnt;
	uint64_t out_bytes, in_bytes;
	struct iovec *scratch;          /* VHOSTVQ_CHAIN_MAX entries for the device */
	void *priv;                     /* vhost_dev_ops.req_priv_bytes, zeroed per request */
	/* The owner's completion (set by the queue; a fuzz target or test may
	 * set its own): @written = bytes written into the writable buffers. */
	void (*done)(struct vhost_req *req, uint32_t written);
	void *owner;
};

/* Completes @req: publishes it in the used ring with @written bytes. On
 * the queue's reactor thread; may be called from inside ops->handle. */
static inline void vhost_req_complete(struct vhost_req *req, uint32_t written)
{
	req->done(req, written);
}

#define VHOST_DEV_OPS_VERSION 3

/*
 * A device. Members are only appended; each says which thread calls it.
 * @dev is the opaque pointer given in vhostsrv_opts.
 */
struct vhost_dev_ops {
	uint32_t version;               /* VHOST_DEV_OPS_VERSION */
	const char *name;               /* for logs: "blk" */

	/* Required. Virtio feature bits the device offers (its own bits and
	 * transport bits it wants); the server adds VERSION_1, INDIRECT_DESC,
	 * EVENT_IDX and VHOST_USER_F_PROTOCOL_FEATURES. Control thread. */
	uint64_t (*features)(void *dev);

	/* Protocol feature bits (VHU_PROTO_*) the device needs on top of the
	 * server's (MQ, REPLY_ACK, BACKEND_REQ, INFLIGHT_SHMFD): CONFIG for
	 * a device whose config space the back-end serves. */
	uint64_t protocol_features;

	/* Optional. GET_CONFIG: fills @len bytes of config space from @off.
	 * Returns 0 or -errno (an empty reply tells the front-end). Control
	 * thread. */
	int (*get_config)(void *dev, uint32_t off, void *buf, uint32_t len);
	/* Optional. SET_CONFIG: the driver wrote @len bytes at @off. Returns 0
	 * or -errno. Control thread. */
	int (*set_config)(void *dev, uint32_t off, const void *buf, uint32_t len);

	/* Optional. SET_FEATURES: what the driver acknowledged. Control
	 * thread, while no ring runs or before a ring starts. */
	void (*set_features)(void *dev, uint64_t features);

	/* Bytes of per-request state (vhost_req.priv). */
	size_t req_priv_bytes;

	/* Required. A request: complete it with vhost_req_complete, now or
	 * later, on the queue's reactor thread. */
	void (*handle)(void *dev, struct vhost_req *req);

	/* Optional. Called by vhostsrv_new (control of the device passes to
	 * the server) and vhostsrv_free: a device that notices config changes
	 * (a resize) calls vhostsrv_config_changed(@srv) from then on until
	 * detach returns. Returns 0 or -errno. */
	int (*attach)(void *dev, struct vhostsrv *srv);
	void (*detach)(void *dev);

	/* Version 2. Optional. Ring @qidx is stopping (GET_VRING_BASE, a
	 * reset, a new memory table, the end of the session) and waits for
	 * every request it handed out: a device that holds requests with no
	 * end of their own (virtio-scsi's event buffers) completes them now
	 * or soon. On the ring's thread. */
	void (*queue_stop)(void *dev, unsigned qidx);

	/* Version 3. Optional. The guest memory table is now @mem (NULL: the
	 * session ended). For a device that reaches guest memory outside
	 * requests (a PCI function's DMA, vhost/virtpci.h); the previous
	 * table is unmapped only after this returns. Control thread, every
	 * ring stopped. */
	void (*mem_changed)(void *dev, const struct vhostmem *mem);
};

struct vhostsrv_opts {
	const char *name;               /* for logs ("vhost-user-blk"); borrowed */
	const struct vhost_dev_ops *ops;/* borrowed, static */
	void *dev;                      /* borrowed; must outlive the server */
	unsigned queues;                /* 1..VHOSTSRV_MAX_QUEUES */
	unsigned threads;               /* reactor threads, 0 = one per queue */
};

/* Creates a server (no thread runs yet). Returns 0, -EINVAL or -ENOMEM;
 * *@out is owned by the caller (vhostsrv_free). */
int vhostsrv_new(const struct vhostsrv_opts *o, struct vhostsrv **out);

/*
 * Listens on the Unix socket @path (borrowed). A socket file nobody
 * listens on any more (a killed back-end's) is replaced; a live one is
 * -EADDRINUSE. vhostsrv_free removes the file. Returns 0 or -errno with a
 * message in @err.
 */
int vhostsrv_listen_unix(struct vhostsrv *s, const char *path, char *err, size_t errlen);

/* Serves the already connected socket @fd (owned by the server from now
 * on) as the first front-end, before any listener's (tests, socketpair).
 * Returns 0 or -EBUSY. */
int vhostsrv_serve_fd(struct vhostsrv *s, int fd);

/* Starts the control and reactor threads. Returns 0 or -errno. */
int vhostsrv_start(struct vhostsrv *s);

/*
 * Asks the server to stop: rings stop after their requests in flight
 * complete, the connection closes, threads end. Thread-safe (not
 * async-signal-safe). vhostsrv_wait returns once that is done.
 */
void vhostsrv_stop(struct vhostsrv *s);

/* Waits until the server has stopped (vhostsrv_stop, or the front-end
 * left and there is no listener to take another one). Returns 0. */
int vhostsrv_wait(struct vhostsrv *s);

/* Stops, waits, detaches the device and frees. NULL allowed. */
void vhostsrv_free(struct vhostsrv *s);

/* The device's config space changed (a resize): tells the front-end with
 * a CONFIG_CHANGE_MSG on the back-end channel, if it gave one. Any thread,
 * also under a disk's watcher lock (it only writes an eventfd). */
void vhostsrv_config_changed(struct vhostsrv *s);

/* Connections served so far (tests: a reconnect happened). */
unsigned vhostsrv_connections(struct vhostsrv *s);

#endif
