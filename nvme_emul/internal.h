/* SPDX-License-Identifier: MIT */
/*
 * internal.h: what the files of the NVMe command core share (not
 * installed): the subsystem, namespace and controller structures, the
 * opcode tables, and the helpers every command handler answers with.
 *
 *   core.c    subsystems, namespaces, controllers, dispatch, completion,
 *             asynchronous events, the error log
 *   admin.c   Identify, Get Log Page, Get/Set Features, Abort, Keep Alive,
 *             Asynchronous Event Request, Namespace Attachment
 *   io.c      the NVM command set: Read, Write, Flush, Write Zeroes,
 *             Dataset Management, Compare
 *   resv.c    Reservation Register/Report/Acquire/Release over the disk's
 *             PR calls, and reservation notifications
 *   status.c  the disk_status table and status strings
 *
 * A handler decodes the SQE, and ends the command exactly once with
 * nvmeemu_finish (or nvmeemu_finish_disk from a disk completion), at
 * once or later. Per-command state lives in cmd->core_ctx (struct
 * cmd_state): nothing is allocated per I/O command.
 */
#ifndef DISKSTACK_NVME_EMUL_INTERNAL_H
#define DISKSTACK_NVME_EMUL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/endian.h"
#include "common/reactor.h"
#include "nvme_emul/nvme.h"
#include "storage/disk.h"

#define NS_WORDS ((NVMEEMU_MAX_NSID + 1 + 63) / 64)
#define ERRLOG_ENTRIES 8        /* Identify ELPE + 1 */
#define RESVLOG_ENTRIES 16      /* reservation notification log pages kept */
#define PR_MAX_REGS 64          /* registrants read back per namespace (prwrap's limit) */

/* Reservation notification log page types (NVMe Base spec §5.16.1.22). */
enum { RNLPT_REG_PREEMPTED = 1, RNLPT_RES_RELEASED = 2, RNLPT_RES_PREEMPTED = 3 };

/* One registrant as a namespace last read it back (resv.c). */
struct ns_reg {
	uint8_t host_id[16];
	uint8_t host_id_len;
	bool holder;
};

struct nvmeemu_ns {
	/* The table's, one per thread with commands running on the
	 * namespace (core.c's per-thread cache), and one per command that
	 * found its thread's cache slot taken or came from a slow path
	 * (nvmeemu_ns_get); 0: removed. */
	atomic_uint refs;
	struct nvmeemu_ns *dead_next;     /* the subsystem's dead list */
	uint32_t nsid;
	struct nvmeemu_subsys *s;
	struct disk *disk;                /* ours: identity, size, resize watch */
	struct disk *io_disk;             /* commands go here: @disk or our prwrap over it */
	uint32_t block_size, lbads;
	uint32_t phys_blocks;             /* physical / logical sector size */
	uint32_t unmap_blocks;            /* optimal unmap granularity, blocks */
	bool read_only, volatile_cache;
	enum disk_unmap_behavior unmap;
	/* DISK_PR_CAP_* of @io_disk for hosts with a host identifier, and
	 * for anonymous ones (prwrap answers those with OpenVMM's
	 * single-registrant model, without the all-registrants types). */
	uint32_t pr_caps, pr_caps_anon;
	uint8_t nguid[16], eui64[8], uuid[16];
	struct disk_resize_watch watch;
	bool watching;
	/* resv.c: the registrants after the last reservation command, to
	 * find whom a command preempted or released (under @pr_lock). */
	pthread_mutex_t pr_lock;
	struct ns_reg regs[PR_MAX_REGS];
	unsigned nregs;
	enum disk_pr_type rtype;
};

struct nvmeemu_subsys {
	char serial[21], model[41], firmware[9], nqn[224];
	struct nvmeemu_subsys_opts o;     /* strings point into the buffers above */
	/* The namespace table: written under the write lock (with atomic
	 * stores), read under the read lock by slow paths and without it by
	 * every command that names a namespace (nvmeemu_ns_get). */
	pthread_rwlock_t ns_lock;
	struct nvmeemu_ns *ns[NVMEEMU_MAX_NSID + 1];
	/* Removed namespaces whose memory stays until the subsystem goes, so
	 * a lookup that raced with the removal may still touch their @refs
	 * (under @lock). */
	struct nvmeemu_ns *dead;
	/* Protects the controller list. Lock order: a disk's resize-watch
	 * lock, then @lock, then a controller's lock. */
	pthread_mutex_t lock;
	struct nvmeemu_ctrl *ctrls;
};

/* Features a controller keeps (NVMe Base spec §5.27.1); under ctrl->lock. */
struct ctrl_feat {
	uint32_t arbitration;             /* 01h */
	uint32_t power;                   /* 02h */
	uint16_t temp_over, temp_under;   /* 04h, composite sensor */
	uint32_t err_recovery;            /* 05h */
	bool wce;                         /* 06h */
	uint16_t nsq, ncq;                /* 07h, 1-based */
	uint32_t coalescing;              /* 08h */
	uint32_t aec;                     /* 0Bh */
	uint64_t ts_ms;                   /* 0Eh: host time at @ts_set_ns */
	uint64_t ts_set_ns;
	bool ts_set;
};

/*
 * The data counters of SMART / Health one thread adds to: slot i > 0
 * belongs to one thread at a time (core.c hands slots out, and back
 * when the thread exits), which adds with a relaxed load and store, no
 * locked instruction; slot 0 is shared, with atomic additions, by the
 * threads beyond the table. Get Log Page sums the slots (relaxed loads
 * from any thread: each counter only grows).
 */
#define CTRL_STAT_SLOTS 64
struct ctrl_stat {
	_Atomic uint64_t read_bytes, write_bytes, read_cmds, write_cmds;
	uint64_t pad[4];                  /* a cache line each */
};
_Static_assert(sizeof(struct ctrl_stat) == 64, "one cache line per slot");

struct err_entry {
	uint64_t count;
	uint16_t sqid, cid, status;
	uint32_t nsid;
	uint64_t lba;
};

struct resv_entry {
	uint64_t count;
	uint8_t type;
	uint32_t nsid;
};

struct nvmeemu_ctrl {
	struct nvmeemu_subsys *s;
	struct nvmeemu_ctrl *next, *prev; /* under s->lock */
	uint16_t cntlid, max_io_queues, vectors;
	/* What disk requests carry. Changes only through Set Features 81h,
	 * which needs no I/O queue to exist: no reservation command runs. */
	struct disk_initiator ini;
	_Atomic uint64_t attached[NS_WORDS];
	atomic_uint io_queues;
	_Atomic uint64_t last_cmd_ns;
	atomic_uint kato_ms;
	atomic_uint coalescing;
	atomic_bool wce;                  /* feat.wce, read by every write without the lock */
	/* SMART / Health counters (NVMe Base spec §5.16.1.3): the data
	 * counters per thread (CTRL_STAT_SLOTS of them, one cache line
	 * each, nvmeemu_count_io), media errors (rare) here. */
	struct ctrl_stat *stat;
	_Atomic uint64_t media_errors;
	uint64_t created_ns;

	pthread_mutex_t lock;             /* everything below */
	struct ctrl_feat feat;
	uint8_t resv_mask[NVMEEMU_MAX_NSID + 1];   /* 82h per namespace */
	uint8_t no_coalesce[NVMEEMU_MAX_VECTORS / 8]; /* 09h CD */
	struct nvmeemu_cmd *aer[NVMEEMU_MAX_AER];
	unsigned naer;
	uint64_t changed[NS_WORDS];       /* changed namespace list */
	unsigned nchanged;
	bool ns_notice_out;               /* reported, not yet read with RAE = 0 */
	bool resv_notice_out;
	struct resv_entry rlog[RESVLOG_ENTRIES];
	unsigned rlog_head, rlog_n;
	uint64_t rlog_count;
	struct err_entry errlog[ERRLOG_ENTRIES];
	unsigned err_head, err_n;
	uint64_t err_count;
};

/* This thread's slot (core.c): -1 until it first counts. */
extern __thread int nvmeemu_stat_slot;
/* Takes a slot for this thread (0 when none is free) and returns it. */
int nvmeemu_stat_slot_take(void);

/* Counts a finished Read (@write false) or Write of @bytes on @c (Write
 * Zeroes: @bytes 0). On the command's thread. */
static inline void nvmeemu_count_io(struct nvmeemu_ctrl *c, bool write, uint64_t bytes)
{
	int i = nvmeemu_stat_slot;

	if (__builtin_expect(i < 0, 0))
		i = nvmeemu_stat_slot_take();
	struct ctrl_stat *t = &c->stat[i];
	_Atomic uint64_t *b = write ? &t->write_bytes : &t->read_bytes;
	_Atomic uint64_t *n = write ? &t->write_cmds : &t->read_cmds;

	if (i == 0) {
		atomic_fetch_add_explicit(b, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
	} else {
		atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + bytes,
				      memory_order_relaxed);
		atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
}

/* The sums of the slots of @c: read / written bytes, read / write commands. */
void nvmeemu_ctrl_io_counts(struct nvmeemu_ctrl *c, uint64_t *rb, uint64_t *wb, uint64_t *rc,
			    uint64_t *wc);

/* The core's per-command state, in cmd->core_ctx. */
struct cmd_state {
	struct reactor_task task;
	struct reactor *r;
	struct nvmeemu_ns *ns;            /* a reference, for commands that name one */
	struct disk_io *io;               /* from the reactor's pool */
	void *buf;                        /* a bounce or report buffer from the reactor's cache */
	size_t buf_len;
	struct iovec *iov;                /* mapped data (io.c), in @buf's tail */
	int iovcnt;
	uint64_t a, b;                    /* the handler's */
	uint32_t step;
	uint32_t dw0;
	uint8_t opc;
	bool in_submit, finished, mapped;
	bool piped_io;                    /* io.c: the disk request uses the pipe */
	int pipe_fd;                      /* nvme_pipe.h: -1 = none */
	uint32_t pipe_len;                /* Read: the host's buffer; Write: bytes in the pipe */
	uint32_t pipe_room;               /* Read: the pipe's size */
	uint32_t piped;                   /* bytes moved through the pipe */
	bool tref;                        /* @ns is counted in the thread's cache (core.c) */
};
_Static_assert(sizeof(struct cmd_state) <= sizeof(((struct nvmeemu_cmd *)0)->core_ctx),
	       "struct cmd_state must fit in nvmeemu_cmd.core_ctx");

static inline struct cmd_state *cmd_state(struct nvmeemu_cmd *cmd)
{
	return (struct cmd_state *)(void *)cmd->core_ctx;
}

/* Dword @i of the command's SQE. */
static inline uint32_t cmd_dw(const struct nvmeemu_cmd *cmd, unsigned i)
{
	return ds_get_le32(cmd->sqe + 4 * i);
}

/* ---- the opcode tables ------------------------------------------------------ */

enum {
	OP_NS     = 1u << 0,  /* needs an attached namespace in NSID (I/O commands) */
	OP_WRITES = 1u << 1,  /* changes the medium: Attempted Write to Read Only Range */
};

/* Commands Supported and Effects bits (NVMe Base spec §5.16.1.6). */
enum {
	FX_CSUPP = 1u << 0,
	FX_LBCC  = 1u << 1,
	FX_NCC   = 1u << 2,
	FX_NIC   = 1u << 3,
	FX_CCC   = 1u << 4,
};

struct nvmeemu_op {
	uint8_t opc;
	uint8_t flags;                    /* OP_* */
	uint32_t effects;                 /* FX_* (CSUPP is implied) */
	void (*run)(struct nvmeemu_cmd *cmd);
	const char *name;
};

/* Each ends with an entry whose run is NULL. */
extern const struct nvmeemu_op nvmeemu_admin_ops[];   /* admin.c */
extern const struct nvmeemu_op nvmeemu_io_ops[];      /* io.c */

/* ---- answering ----------------------------------------------------------------- */

/* Ends @cmd with @status (with DNR if it says so) and DW0 @dw0: done()
 * runs on the command's reactor, never inside nvmeemu_cmd_submit. Only
 * on the command's reactor thread (its namespace reference may be the
 * thread's, nvme.h). */
void nvmeemu_finish(struct nvmeemu_cmd *cmd, uint16_t status, uint32_t dw0);
/* Ends @cmd with the status of the finished disk request @io (the table
 * of status.c), returns @io to the pool and drops the namespace. */
void nvmeemu_finish_disk(struct nvmeemu_cmd *cmd, struct disk_io *io);
/* Moves command data (nvme.h's data ops): 0, or the status to end with. */
uint16_t nvmeemu_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len);
uint16_t nvmeemu_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len);
/* The status for a data op's -errno. */
uint16_t nvmeemu_data_errno(int r);
/* A disk request for @cmd from its reactor's pool: the controller's
 * initiator, @done, @cmd in opaque. NULL when allocation fails. */
struct disk_io *nvmeemu_cmd_io(struct nvmeemu_cmd *cmd, void (*done)(struct disk_io *io));
/* A buffer of @len bytes from the command's reactor's cache, kept in the
 * command's state and given back when it finishes. NULL on failure. */
void *nvmeemu_cmd_buf(struct nvmeemu_cmd *cmd, size_t len, bool zero);

/* ---- namespaces and controllers ------------------------------------------------ */

/* Namespace @nsid with a new reference when it exists (and, with @c, is
 * attached to @c); NULL otherwise. One atomic operation each way: slow
 * paths; nvmeemu_cmd_submit takes the I/O commands' references from the
 * thread's cache instead. */
struct nvmeemu_ns *nvmeemu_ns_get(struct nvmeemu_subsys *s, struct nvmeemu_ctrl *c,
				  uint32_t nsid);
void nvmeemu_ns_put(struct nvmeemu_ns *ns);
bool nvmeemu_ctrl_has_ns(const struct nvmeemu_ctrl *c, uint32_t nsid);
/* Whether any namespace of @s has a volatile write cache (Identify VWC). */
bool nvmeemu_subsys_vwc(struct nvmeemu_subsys *s);
/* Feature defaults of @c (reset, SEL = 1 and 2). */
void nvmeemu_feat_defaults(struct nvmeemu_ctrl *c, struct ctrl_feat *f);

/* ---- asynchronous events (core.c) ----------------------------------------------- */

/* Holds an Asynchronous Event Request (admin.c checked nothing else):
 * false when NVMEEMU_MAX_AER are held already. */
bool nvmeemu_aer_hold(struct nvmeemu_ctrl *c, struct nvmeemu_cmd *cmd);
/* Completes the held AER with CID @cid with Command Abort Requested;
 * false when none is held. */
bool nvmeemu_aer_abort(struct nvmeemu_ctrl *c, uint16_t cid);
/* Completes held AERs for pending events (c->lock held). */
void nvmeemu_events_fire_locked(struct nvmeemu_ctrl *c);
/* Namespace @nsid of @c changed (attribute, attachment, size). */
void nvmeemu_ctrl_ns_changed(struct nvmeemu_ctrl *c, uint32_t nsid);
/* A reservation notification of @type on @nsid for @c (resv.c), unless
 * the controller's 82h mask for @nsid hides it. */
void nvmeemu_ctrl_resv_notice(struct nvmeemu_ctrl *c, uint8_t type, uint32_t nsid);

/* ---- the handlers ---------------------------------------------------------------- */

/* resv.c: the reservation commands, and RESCAP for Identify. */
void nvmeemu_resv_register(struct nvmeemu_cmd *cmd);
void nvmeemu_resv_report(struct nvmeemu_cmd *cmd);
void nvmeemu_resv_acquire(struct nvmeemu_cmd *cmd);
void nvmeemu_resv_release(struct nvmeemu_cmd *cmd);
/* Get Features 83h (Reservation Persistence): reads the disk's PTPL. */
void nvmeemu_resv_get_ptpl(struct nvmeemu_cmd *cmd);
/* The disk's reservation state as the namespace's starting snapshot
 * (synchronous, nvmeemu_subsys_add_ns). */
int nvmeemu_resv_init(struct nvmeemu_ns *ns);

#endif
