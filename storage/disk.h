/* SPDX-License-Identifier: MIT */
/*
 * disk.h: the disk contract. Every backend, decorator and composite disk is
 * a struct disk; every frontend holds one and never knows what is behind it.
 *
 * Semantics follow OpenVMM's DiskIo / Disk (docs/openvmm-compat.md
 * §1–§2) with the upstream quirks fixed (wait_resize is forwarded).
 *
 * Notes on the design
 * -------------------
 * - A disk is a reference-counted handle shared by every thread. Metadata
 *   (struct disk_info) is validated and cached at creation and never
 *   changes; the sector count is live (ops->sector_count).
 * - Requests are asynchronous and scatter-gather. A caller fills a
 *   struct disk_io and calls disk_submit() on a reactor thread; io->done runs
 *   later on the same thread, never inside disk_submit().
 * - Only the dispatcher (disk.c) calls ops. It checks the contract once:
 *   representability (sector + count must not overflow and must stay
 *   <= INT64_MAX >> shift), whole-sector buffers, flags allowed for the op.
 *   It short-circuits unmap when the behaviour is IGNORED (still range
 *   checked), emulates write-zeroes with unmap when unmap reads back
 *   zeroes and NO_UNMAP is not set (the fast case: DISK_CAP_FAST_ZERO),
 *   else with writes (FAST_ZERO then fails UNSUPPORTED before any
 *   write), FUA with write + flush, CACHE with reads, and block
 *   status with one allocated extent. Range checks against the sector count
 *   belong to the backend, which alone can do them atomically with the I/O.
 * - Op results: an op either finishes at once and returns the final status
 *   (>= 0, a enum disk_status), or returns DISK_PENDING and later calls
 *   disk_io_complete() from a callback (never from inside the op). The
 *   dispatcher turns an immediate status into a deferred completion.
 * - A NULL op in a decorator (a disk created with a lower disk) passes the
 *   request through to the lower disk; in a backend it means unsupported,
 *   and the dispatcher emulates it where that is safe. A decorator's op may
 *   also decide per request to pass it through, with disk_forward().
 * - Per-request state: io->hctx is scratch space owned by the disk (or
 *   layer) handling the request; io->sctx and io->opaque belong to whoever
 *   submitted it and are never touched below. A disk that issues requests
 *   of its own takes them from the per-reactor cache (disk_io_get), so
 *   steady-state I/O does not allocate.
 * - Fused transforms (io->xform, DISK_CAP_XFORM): a decorator that changes
 *   the bytes (crypt) can hand the transform to a disk that holds its data
 *   in memory (a RAM layer), which then applies it while it moves the data
 *   between its storage and the request's buffers instead of copying: one
 *   pass over the data instead of a copy plus a transform. Only a disk that
 *   advertises DISK_CAP_XFORM gets such requests (the dispatcher refuses
 *   them elsewhere); decorators never inherit the bit (disk_info_inherit
 *   clears it), since they would have to pass the transform on.
 * - Adopted write buffers (DISK_IO_ADOPT, disk_info.adopt_bytes): a disk
 *   that keeps its data in malloc'd blocks of adopt_bytes (a RAM layer's
 *   pages, only write path of its layered disk) may, on a WRITE that says
 *   so, take a request buffer as its own block instead of copying it: a
 *   whole block's worth of data that one iovec entry holds exactly
 *   (iov_len == adopt_bytes, starting at a byte offset of the disk that
 *   is a multiple of adopt_bytes, iov_base from malloc with at least that
 *   size). It then stores in that entry's iov_base the block it replaced
 *   (malloc'd, adopt_bytes, old contents) or NULL, so the iovec array is
 *   written (the cast from const is the caller's permission). After
 *   done() the caller owns whatever the entries point to, and nothing
 *   else: an adopted buffer is the disk's. Entries that do not qualify
 *   are copied as usual, and the flag is only ever a permission: a disk
 *   with adopt_bytes == 0 gets it stripped by the dispatcher, and
 *   disk_info_inherit clears adopt_bytes, so a decorator never passes it
 *   to a disk that would keep what the decorator handed it. Saves a copy
 *   per written byte where the data arrives in a buffer the caller would
 *   otherwise free or reuse (the NBD server's large WRITE payloads).
 * - Pipe transfers (DISK_IO_PIPE, DISK_CAP_PIPE): a READ may put its
 *   bytes into a pipe and a WRITE take them from one (io->pipe_fd, and
 *   io->count set by the caller instead of an iovec), so a network target
 *   can move a file's pages to and from a socket with splice(2) and no
 *   copy through its own memory. Only a disk that advertises
 *   DISK_CAP_PIPE gets such requests (the file backend: its bytes are a
 *   file's, one for one); the dispatcher refuses them elsewhere with
 *   UNSUPPORTED, so a caller may simply try and fall back to memory, and
 *   disk_info_inherit clears the bit (a decorator that only checks and
 *   forwards, prwrap, sets it again). The dispatcher's checks (range,
 *   read-only, FUA emulation, statistics) apply as to any request. The
 *   pipe must have room for the whole READ (the caller sized it: a
 *   splice into a full pipe would wait for a reader that is the caller
 *   itself) and must hold the whole WRITE. On failure the pipe's contents
 *   are unspecified: the caller drains or closes it. Neither end is
 *   closed or left non-blocking by the disk.
 */
#ifndef DISKSTACK_STORAGE_DISK_H
#define DISKSTACK_STORAGE_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/reactor.h"

struct disk;
struct bitmap;

/* ---- status ------------------------------------------------------------ */

/* Completion status; mirrors OpenVMM's DiskError. */
enum disk_status {
	DISK_OK = 0,
	DISK_ILLEGAL_BLOCK,         /* range not representable or past the end */
	DISK_INVALID_INPUT,         /* bad argument (e.g. PR type mismatch, partial sector) */
	DISK_IO_ERROR,              /* host I/O failure; io->os_errno says which */
	DISK_MEDIUM_ERROR,          /* io->medium says which */
	DISK_MEMORY_ACCESS,         /* a buffer could not be accessed */
	DISK_READ_ONLY,             /* write to a read-only disk or range */
	DISK_RESERVATION_CONFLICT,
	DISK_ABORTED_PREEMPT,       /* aborted by PREEMPT AND ABORT */
	DISK_UNSUPPORTED,           /* op not supported (e.g. eject) */
	DISK_STATUS_COUNT
};

/* Returned by an op that will complete later through disk_io_complete(). */
#define DISK_PENDING (-1)

/* Details of DISK_MEDIUM_ERROR. */
enum disk_medium_detail {
	DISK_MEDIUM_NONE = 0,
	DISK_MEDIUM_APP_TAG,
	DISK_MEDIUM_GUARD,
	DISK_MEDIUM_REF_TAG,
	DISK_MEDIUM_UNRECOVERED_READ,
	DISK_MEDIUM_WRITE_FAULT,
};

/* Short text for a status ("illegal request", ...). Never NULL. */
const char *disk_status_str(int status);

/* ---- metadata ---------------------------------------------------------- */

enum disk_unmap_behavior {
	DISK_UNMAP_UNSPECIFIED = 0,  /* contents after unmap undefined */
	DISK_UNMAP_IGNORED,          /* unmap is a no-op; reported unsupported */
	DISK_UNMAP_ZEROES,           /* unmapped sectors read back as zero */
};

/* Capability bits (struct disk_info.caps). */
enum {
	DISK_CAP_COHERENT       = 1u << 0, /* every handle/connection sees writes at once (NBD multi-conn) */
	DISK_CAP_VOLATILE_CACHE = 1u << 1, /* acknowledged writes may need a flush to be durable */
	DISK_CAP_RESIZE         = 1u << 2, /* the sector count can change; watchers get told */
	DISK_CAP_EJECT          = 1u << 3, /* eject is meaningful (removable media) */
	DISK_CAP_PR             = 1u << 4, /* persistent reservations are answered */
	DISK_CAP_BLOCK_STATUS   = 1u << 5, /* block status reports real allocation */
	DISK_CAP_FAST_ZERO      = 1u << 6, /* write-zeroes (without NO_UNMAP) is cheaper than
	                                    * writing zeroes: FAST_ZERO is worth asking for */
	DISK_CAP_PERSISTENT     = 1u << 7, /* data survives the process (file, sqlite, ...) */
	DISK_CAP_XFORM          = 1u << 8, /* READ and WRITE honour io->xform (struct disk_xform) */
	DISK_CAP_PIPE           = 1u << 9, /* READ and WRITE take DISK_IO_PIPE (see the notes) */
};

/* Metadata cached when a handle is created. */
struct disk_info {
	const char *type;               /* "layered", "file", "crypt", ... (static string) */
	uint32_t sector_size;           /* power of two, >= 512 */
	uint32_t physical_sector_size;  /* power of two, >= sector_size */
	uint32_t sector_shift;          /* log2(sector_size); filled by disk_new */
	bool has_disk_id;
	uint8_t disk_id[16];
	bool fua_respected;             /* a FUA write is durable when it completes */
	bool read_only;                 /* reported property; frontends enforce it */
	enum disk_unmap_behavior unmap_behavior;
	uint32_t optimal_unmap_sectors; /* >= 1 */
	uint32_t caps;                  /* DISK_CAP_* */
	/* Appended: WRITE takes DISK_IO_ADOPT with buffers of this many bytes
	 * (0: never; see "Adopted write buffers" above). */
	uint32_t adopt_bytes;
	/* Appended: where the data comes from and which version of it, for
	 * caches bound to their origin (docs/layer-autocache.md): a locator
	 * and a validator that changes when the data may have changed, e.g.
	 * "file:/abs/path;dev=8:1;ino=12;size=1049088;mtime=1733540000.5" or
	 * "blob:vhd1:https://host/d.vhd?<redacted>;size=...;etag=...". No
	 * credentials. NULL: unknown (mem:, nbd:, layered disks, and
	 * decorators that change the data, such as crypt:). Owned by the disk
	 * that set it (a decorator that inherits it borrows it from the disk
	 * below, which it keeps open); valid while the disk is. */
	const char *origin;
};

/* ---- persistent reservations ------------------------------------------ */

/* Reservation types, numbered as NVMe RTYPE and Linux PR_* (0 = none). */
enum disk_pr_type {
	DISK_PR_NONE = 0,
	DISK_PR_WRITE_EXCLUSIVE = 1,
	DISK_PR_EXCLUSIVE_ACCESS = 2,
	DISK_PR_WRITE_EXCLUSIVE_REG_ONLY = 3,
	DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY = 4,
	DISK_PR_WRITE_EXCLUSIVE_ALL_REG = 5,
	DISK_PR_EXCLUSIVE_ACCESS_ALL_REG = 6,
};

/* Capability bits answered by DISK_OP_PR_CAPS. */
enum {
	DISK_PR_CAP_WE = 1u << 0,
	DISK_PR_CAP_EA = 1u << 1,
	DISK_PR_CAP_WE_RO = 1u << 2,
	DISK_PR_CAP_EA_RO = 1u << 3,
	DISK_PR_CAP_WE_AR = 1u << 4,
	DISK_PR_CAP_EA_AR = 1u << 5,
	DISK_PR_CAP_PTPL = 1u << 6,
};

/* The access rule of persistent reservations (SPC-4's table of the
 * reservation types; NVMe "command behavior in the presence of a
 * reservation"): may an initiator that is (not) @registered and (not) a
 * @holder read (@write false) or change the disk under reservation type
 * @type? An unknown type allows nothing but the holder. Pure. */
bool disk_pr_access_allowed(enum disk_pr_type type, bool registered, bool holder, bool write);

/* Who is asking: a host identifier (NVMe host id, SCSI initiator port, NBD
 * connection...). Optional on every request; borrowed. */
struct disk_initiator {
	uint8_t host_id[16];
	uint8_t host_id_len;            /* 0..16; 0 = anonymous */
	uint16_t controller_id;
};

struct disk_pr_controller {
	uint64_t key;
	uint8_t host_id[16];
	uint8_t host_id_len;
	uint16_t controller_id;
	bool holds_reservation;
};

/* Output of DISK_OP_PR_REPORT. The caller provides @controllers with room
 * for @max_controllers; @nr_controllers is the total registered, which may
 * exceed the room (only the first entries are filled). */
struct disk_pr_report {
	uint32_t generation;
	enum disk_pr_type type;
	bool ptpl;
	uint32_t nr_controllers;
	uint32_t max_controllers;
	struct disk_pr_controller *controllers;
};

/* Arguments of the PR ops. */
struct disk_pr_args {
	enum disk_pr_type type;         /* RESERVE, RELEASE, PREEMPT */
	bool has_current_key;           /* REGISTER: false = ignore existing key */
	uint64_t key;                   /* current/reservation key */
	uint64_t new_key;               /* REGISTER: new key (0 unregisters); PREEMPT: key to preempt */
	int ptpl;                       /* REGISTER: -1 leave, 0 clear, 1 set */
	bool abort;                     /* PREEMPT: PREEMPT AND ABORT */
	uint32_t caps;                  /* out, PR_CAPS: DISK_PR_CAP_* */
	struct disk_pr_report *report;  /* out, PR_REPORT: caller-owned */
};

/* ---- block status ------------------------------------------------------ */

enum {
	DISK_EXTENT_HOLE = 1u << 0,     /* not allocated: no layer or backend holds it */
	DISK_EXTENT_ZERO = 1u << 1,     /* reads as zeroes */
};

/* One run of sectors with the same status. */
struct disk_extent {
	uint64_t count;                 /* sectors */
	uint32_t flags;                 /* DISK_EXTENT_* */
	int32_t layer;                  /* index of the layer holding it (layered disks), else -1 */
};

/* ---- the request ------------------------------------------------------- */

enum disk_op {
	DISK_OP_READ = 0,
	DISK_OP_WRITE,          /* flags: FUA */
	DISK_OP_FLUSH,
	DISK_OP_UNMAP,          /* flags: BLOCK_LEVEL_ONLY; count */
	DISK_OP_WRITE_ZEROES,   /* flags: FUA, NO_UNMAP, FAST_ZERO; count */
	DISK_OP_BLOCK_STATUS,   /* count; u.bs */
	DISK_OP_CACHE,          /* prefetch (fills read caches); count */
	DISK_OP_EJECT,
	DISK_OP_PR_CAPS,
	DISK_OP_PR_REPORT,
	DISK_OP_PR_REGISTER,
	DISK_OP_PR_RESERVE,
	DISK_OP_PR_RELEASE,
	DISK_OP_PR_CLEAR,
	DISK_OP_PR_PREEMPT,
	DISK_OP_COUNT
};

/* Request flags. */
enum {
	DISK_IO_FUA              = 1u << 0,  /* WRITE, WRITE_ZEROES: durable on completion */
	DISK_IO_NO_UNMAP         = 1u << 1,  /* WRITE_ZEROES: must allocate, not deallocate */
	DISK_IO_FAST_ZERO        = 1u << 2,  /* WRITE_ZEROES: fail UNSUPPORTED, changing nothing,
	                                      * rather than write data (the NBD protocol's
	                                      * NBD_CMD_FLAG_FAST_ZERO) */
	DISK_IO_BLOCK_LEVEL_ONLY = 1u << 3,  /* UNMAP: storvsp hint, ignored by every backend */
	DISK_IO_ADOPT            = 1u << 4,  /* WRITE: the disk may keep the buffers (see the notes) */
	DISK_IO_PIPE             = 1u << 5,  /* READ, WRITE: data in io->pipe_fd, not io->iov
	                                      * (DISK_CAP_PIPE only; see the notes) */
	/* Layer-only flags (used between a layered disk and its layers): */
	DISK_IO_NO_OVERWRITE     = 1u << 8,  /* layer WRITE: only sectors not yet present */
	DISK_IO_NEXT_IS_ZERO     = 1u << 9,  /* layer UNMAP: the layer below reads zero here */
};

/* Op name for logs ("read", "write", ...). */
const char *disk_op_str(enum disk_op op);

/*
 * A data transform applied by the disk that moves the data (see the notes
 * at the top). On a READ, fn turns stored bytes into what the caller gets
 * (src = the disk's storage, dst = the request's buffers); on a WRITE,
 * what the caller gives into what is stored (src = the request's buffers,
 * which are never written, dst = the disk's storage). Every call covers
 * @len bytes of whole sectors (len > 0, a multiple of the sector size),
 * the first being LBA @sector of the request's numbering. @dst and @src
 * are either equal (in place) or disjoint. A sector that no layer or
 * backend holds reads as the transform of a zero sector, exactly as if it
 * had been read into the buffer and transformed there. Returns 0, or
 * -errno (the request then fails with DISK_IO_ERROR and that errno; on a
 * READ the buffers hold garbage, on a WRITE the stored data may be
 * partly written, as after any failed write). Called on the request's
 * reactor thread, any number of times per request, in no set order.
 */
struct disk_xform {
	int (*fn)(const struct disk_xform *xf, void *dst, const void *src, size_t len,
		  uint64_t sector);
	void *ctx;                            /* fn's */
};

struct disk_io {
	/* Set by the submitter. */
	enum disk_op op;
	uint32_t flags;                       /* DISK_IO_* allowed for @op */
	uint64_t sector;                      /* start LBA */
	uint64_t count;                       /* sectors; READ/WRITE: set by disk_submit from @iov
	                                       * (with DISK_IO_PIPE: by the caller) */
	const struct iovec *iov;              /* READ/WRITE: borrowed until completion */
	int iovcnt;
	int pipe_fd;                          /* DISK_IO_PIPE: READ the write end, WRITE the read
	                                       * end of a pipe (borrowed until completion) */
	const struct disk_initiator *initiator; /* optional, borrowed */
	/* READ/WRITE: optional, borrowed until completion; only for disks with
	 * DISK_CAP_XFORM (others fail the request with INVALID_INPUT). Layer
	 * requests: only for layers whose layer_meta.xform is set. */
	const struct disk_xform *xform;
	union {
		struct {
			struct disk_extent *extents;  /* caller-owned array */
			uint32_t max;                 /* room in @extents, >= 1 */
			uint32_t nr;                  /* out: extents filled */
		} bs;
		struct disk_pr_args pr;
		struct bitmap *marker;            /* layer READ: presence marker */
	} u;
	void (*done)(struct disk_io *io);     /* runs on the submitting reactor */
	void *opaque;                         /* the submitter's */
	uintptr_t sctx[6];                    /* scratch of the submitter; never touched below */

	/* Results, valid in done(). */
	int status;                           /* enum disk_status */
	int os_errno;                         /* with DISK_IO_ERROR */
	enum disk_medium_detail medium;       /* with DISK_MEDIUM_ERROR */

	/* Private to the dispatcher and the handling disk. */
	struct reactor *reactor;              /* the submitting thread's reactor */
	struct disk *disk;                    /* the disk it was submitted to: the top
	                                       * of the stack, which may be a decorator
	                                       * above the disk handling it; handlers
	                                       * use their own `d` argument */
	struct reactor_task task;
	struct disk_io *cache_next;
	uintptr_t hctx[6];                    /* scratch of the handling disk */
	/* The dispatcher's statistics (disk_stats_enable): the submitter's
	 * done while it counts the request, the disk counted, the start. */
	void (*stats_done)(struct disk_io *io);
	struct disk *stats_disk;
	uint64_t stats_t0_ns;
};

/* Starts @io on @d. Must be called on a reactor thread; io->done runs later
 * on that thread. Bad requests complete with an error status. */
void disk_submit(struct disk *d, struct disk_io *io);

/* Completes a request that an op left DISK_PENDING; calls io->done. Call it
 * from a callback, never from inside the op that got the request. */
void disk_io_complete(struct disk_io *io, int status);
/* Same, with DISK_IO_ERROR and an errno. */
void disk_io_complete_errno(struct disk_io *io, int os_errno);
/* Completes @io with @status (and @os_errno when @status is DISK_IO_ERROR)
 * on a later pass of its reactor's loop: for a backend that finishes a
 * request on a thread of its own (@from_other_thread: the completion is
 * posted to the reactor), or on the reactor but from a place that must not
 * call io->done itself. */
void disk_io_complete_later(struct disk_io *io, int status, int os_errno,
			    bool from_other_thread);

/*
 * Hands @io, which a decorator's op has just received, on to @lower (the
 * disk it decorates) as if it had been submitted there: the lower disk
 * handles it and completes it straight to the submitter's io->done. Returns
 * what an op returns (a status or DISK_PENDING); the op returns that value
 * unchanged. From then on @io, including io->hctx, belongs to @lower. For
 * decorators that look at a request but do not need its completion (a
 * cheap pass-through after a check); no child request is needed. @lower
 * must have the sector size of the disk @io was submitted to: reads and
 * writes are not re-validated.
 */
int disk_forward(struct disk *lower, struct disk_io *io);

/*
 * Starts a child request @child on @d from inside an op (fan-out without a
 * deferral per child). Like disk_submit(), except for requests that finish
 * at once: their final status is returned (also in child->status) and
 * child->done is NOT called; the caller owns @child again. Otherwise
 * returns DISK_PENDING and child->done runs later, as usual. Call on the
 * reactor thread of the parent request.
 */
int disk_submit_child(struct disk *d, struct disk_io *child);

/* Copies the result (status, errno, medium detail) of @from to @to. */
void disk_io_copy_result(struct disk_io *to, const struct disk_io *from);

/* Ends @child, a request that @parent's handler issued: copies its error
 * details (errno, medium detail) to @parent, returns @child to the reactor
 * cache, and then either completes @parent with @status (when
 * @from_callback; returns DISK_PENDING) or returns @status for the op that
 * is still running to return. */
int disk_io_end_child(struct disk_io *parent, struct disk_io *child, int status,
		      bool from_callback);

/* Takes a zeroed request from @r's cache (allocating only when the cache is
 * empty). Returns NULL on allocation failure. */
struct disk_io *disk_io_get(struct reactor *r);

/*
 * A child request that repeats @parent (op, flags, sector, count, iov,
 * iovcnt, pipe_fd, initiator, xform), from @parent's reactor cache, with done = @done and
 * opaque = @parent: what a decorator sends below when it passes a request
 * on but needs its completion. Returns NULL on allocation failure.
 */
struct disk_io *disk_io_get_copy(struct disk_io *parent, void (*done)(struct disk_io *));
/* Copies the request fields of @from (op, flags, sector, count, iov,
 * iovcnt, pipe_fd, initiator, xform) to @to; for a child that repeats its parent
 * and then changes a few of them. Results and private fields untouched. */
void disk_io_copy_request(struct disk_io *to, const struct disk_io *from);
/* An empty child request of @parent from its reactor cache: done = @done,
 * opaque = @parent and @parent's initiator, the rest zero. NULL on
 * allocation failure. */
struct disk_io *disk_io_get_child(struct disk_io *parent, void (*done)(struct disk_io *));
/* Same, with a staging buffer of @bytes from the reactor's buffer cache in
 * *@buf (return it with reactor_buf_put): for a request handled in chunks
 * through a buffer (emulated CACHE, encrypted writes). Both or neither:
 * NULL when either allocation fails. */
struct disk_io *disk_io_get_staged(struct disk_io *parent, void (*done)(struct disk_io *),
				   size_t bytes, void **buf);
/* Returns a request from disk_io_get() to @r's cache. NULL allowed. */
void disk_io_put(struct reactor *r, struct disk_io *io);

/* ---- statistics (docs/ctl.md, "stats") --------------------------------- */

/*
 * Per-handle request statistics, off until enabled: requests submitted to
 * @d with disk_submit or disk_submit_child (so a layered disk's requests
 * to the disk below it, through disklayer, count on that disk), from
 * submission to io->done, in the classes of common/iostats.h (UNMAP is
 * "trim", WRITE_ZEROES "zero", everything but READ, WRITE and FLUSH
 * "other"). A request counts on the first counted disk it reaches, also
 * through disk_forward (so a wrapper above, like a frontend's prwrap:,
 * need not be counted); a decorator handing it on with disk_forward does
 * not count it again below, nor do the dispatcher's emulations (a FUA
 * write's flush, write-zeroes done with unmaps) count beside the request
 * they emulate. Counters are per reactor thread (no cache line
 * written by two threads), summed by disk_stats_read; reactors beyond
 * DISK_STATS_MAX_REACTORS alive at once share one more slot, with atomic
 * additions.
 */
#define DISK_STATS_MAX_REACTORS 256u

/* Turns counting on for @d (idempotent; any thread). 0 or -ENOMEM. */
int disk_stats_enable(struct disk *d);
/* Turns counting off again (any thread): new requests are not counted,
 * disk_stats_read answers -ENOENT; a later disk_stats_enable starts the
 * counters again from zero. The counters' memory stays until the disk
 * is freed (requests already under way count into it when they end). */
void disk_stats_disable(struct disk *d);
/* True once disk_stats_enable(@d) succeeded (and no disable came after). */
bool disk_stats_enabled(const struct disk *d);
struct iostats_op;
/* Reads @d's statistics since *@since_ns (CLOCK_MONOTONIC of the enable or
 * the last reset) into @out[IOSTATS_COUNT]; @reset restarts them. Returns
 * 0, or -ENOENT when counting is off. Any thread. */
int disk_stats_read(struct disk *d, bool reset, uint64_t *since_ns, struct iostats_op *out);

/*
 * The same counters as a set of their own, for what is counted like a
 * disk but is not one: the layers of a layered disk (layer_stats_enable,
 * storage/layered.h). A set lives behind an atomic pointer its owner
 * keeps (NULL: never counted) and frees with disk_stats_set_free when no
 * request can count into it any more. Counting a request: read the
 * pointer (relaxed); only when it is not NULL and disk_stats_set_on,
 * take reactor_now_ns() before handing the request on, and call
 * disk_stats_set_count on the submitting reactor when it has finished.
 */
struct disk_stats;
/* As disk_stats_enable; @sector_shift: of the sectors counted. */
int disk_stats_set_enable(_Atomic(struct disk_stats *) *p, uint32_t sector_shift);
/* As disk_stats_disable. */
void disk_stats_set_disable(_Atomic(struct disk_stats *) *p);
/* True when @st (NULL allowed) counts: enabled, and not disabled since. */
bool disk_stats_set_on(const struct disk_stats *st);
/* As disk_stats_read. */
int disk_stats_set_read(_Atomic(struct disk_stats *) *p, bool reset, uint64_t *since_ns,
			struct iostats_op *out);
/* Counts one finished request of @op over @sectors (the payload bytes of
 * a READ or WRITE, unless @status is an error) that started at @t0_ns, in
 * @st's counters of reactor @r: on @r's thread only. */
void disk_stats_set_count(struct disk_stats *st, struct reactor *r, enum disk_op op,
			  int status, uint64_t sectors, uint64_t t0_ns);
/* Frees a set (NULL allowed). */
void disk_stats_set_free(struct disk_stats *st);

/* ---- resize watch ------------------------------------------------------ */

/* A persistent resize watcher. cb runs on whichever thread changed the size,
 * with the disk's watcher lock held: it must not call into the disk, and it
 * usually posts a task to its own reactor. It may run once right away if the
 * size already differs from @seen_count when it is added. */
struct disk_resize_watch {
	void (*cb)(struct disk_resize_watch *w, uint64_t new_count);
	uint64_t seen_count;                  /* last count the watcher knew */
	void *opaque;
	struct disk_resize_watch *next, *prev;/* private */
};

/* Adds @w. Returns 0, or -EOPNOTSUPP if the disk's size never changes. */
int disk_watch_resize(struct disk *d, struct disk_resize_watch *w);
/* Removes @w; after it returns, cb is not running and will not run. */
void disk_unwatch_resize(struct disk *d, struct disk_resize_watch *w);

/* A list of watchers, for backends whose size can change. Thread-safe. */
struct resize_notifier;
int resize_notifier_new(struct resize_notifier **out);
void resize_notifier_free(struct resize_notifier *n);
/* Adds @w and fires it at once if @current differs from w->seen_count. */
void resize_notifier_add(struct resize_notifier *n, struct disk_resize_watch *w, uint64_t current);
void resize_notifier_remove(struct resize_notifier *n, struct disk_resize_watch *w);
/* Tells every watcher the size is now @new_count. */
void resize_notifier_notify(struct resize_notifier *n, uint64_t new_count);

/* ---- description (diskstack info) ------------------------------------- */

/* A sink for a disk's self-description. Implementations print text or JSON. */
struct disk_describer {
	/* One parameter of the current node (never key material). */
	void (*param)(struct disk_describer *dd, const char *key, const char *value);
	/* A child disk (decorated disk, stripe member): the sink recurses with
	 * disk_describe(). */
	void (*child)(struct disk_describer *dd, const char *role, struct disk *child);
	/* A layer of a layered disk, top first; its params follow until
	 * layer_end. @disk is the disk behind a disk-as-layer, else NULL. */
	void (*layer_begin)(struct disk_describer *dd, unsigned index, const char *type,
			    bool read_cache, bool write_through, uint64_t sector_count,
			    struct disk *disk);
	void (*layer_end)(struct disk_describer *dd);
	void *opaque;
};

/* Describes @d's own parameters and children into @dd (not its disk_info,
 * which the caller reads with disk_get_info). */
void disk_describe(struct disk *d, struct disk_describer *dd);
/* Helper for describe ops: dd->param with a formatted value. */
void disk_describe_paramf(struct disk_describer *dd, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- the vtable -------------------------------------------------------- */

#define DISK_OPS_VERSION 2

/* The prologue the dispatcher runs for a disk before its op (disk_ops.checks). */
enum {
	/* READ, WRITE, UNMAP, WRITE_ZEROES, CACHE, BLOCK_STATUS: the range
	 * must lie within the live sector count, else ILLEGAL_BLOCK (for a
	 * disk whose count only changes between requests). */
	DISK_CHECK_RANGE     = 1u << 0,
	/* WRITE, WRITE_ZEROES on a disk whose disk_info.read_only is set:
	 * READ_ONLY (after the range check). */
	DISK_CHECK_READ_ONLY = 1u << 1,
	/* READ, WRITE, UNMAP, WRITE_ZEROES, CACHE with count 0: DISK_OK at
	 * once (after the checks above). */
	DISK_CHECK_EMPTY     = 1u << 2,
};

/*
 * Implemented by each backend, decorator and composite. Members are only
 * appended. Unless said otherwise a member is Optional, called on a reactor
 * thread (the submitter's), and returns a disk_status or DISK_PENDING.
 * Requests reaching an op have passed the dispatcher's checks.
 */
struct disk_ops {
	uint32_t version;               /* DISK_OPS_VERSION (1) */

	/* Required (v1) for backends; decorators may leave it NULL to forward.
	 * Current size in logical sectors; any thread. */
	uint64_t (*sector_count)(struct disk *d);

	/* v1. READ: fill io->iov with io->count sectors from io->sector.
	 * Required for backends. Must return ILLEGAL_BLOCK past the end. */
	int (*read)(struct disk *d, struct disk_io *io);
	/* v1. WRITE, flags FUA. Required for backends. */
	int (*write)(struct disk *d, struct disk_io *io);
	/* v1. FLUSH. NULL in a backend: success (nothing cached). */
	int (*flush)(struct disk *d, struct disk_io *io);
	/* v1. UNMAP (count may be 0), flags BLOCK_LEVEL_ONLY. Not called when
	 * the behaviour is IGNORED. NULL in a backend: success. */
	int (*unmap)(struct disk *d, struct disk_io *io);
	/* v1. WRITE_ZEROES, flags FUA, NO_UNMAP, FAST_ZERO. NULL in a backend:
	 * emulated (unmap if allowed and it reads back zeroes, else writes). */
	int (*write_zeroes)(struct disk *d, struct disk_io *io);
	/* v1. BLOCK_STATUS: fill io->u.bs. NULL in a backend: one allocated
	 * extent over the range. */
	int (*block_status)(struct disk *d, struct disk_io *io);
	/* v1. CACHE (prefetch). NULL in a backend: emulated by reading. */
	int (*cache)(struct disk *d, struct disk_io *io);
	/* v1. EJECT. NULL in a backend: UNSUPPORTED. */
	int (*eject)(struct disk *d, struct disk_io *io);
	/* v1. Every DISK_OP_PR_* op. NULL in a backend: UNSUPPORTED. */
	int (*pr)(struct disk *d, struct disk_io *io);

	/* v1. Adds/removes a resize watcher; any thread. NULL in a backend:
	 * -EOPNOTSUPP (fixed size). */
	int (*watch_resize)(struct disk *d, struct disk_resize_watch *w);
	void (*unwatch_resize)(struct disk *d, struct disk_resize_watch *w);

	/* v1. Describes parameters and children (diskstack info); any thread. */
	void (*describe)(struct disk *d, struct disk_describer *dd);

	/* v1. Frees the private state; the dispatcher then releases the lower
	 * disk, if any. Any thread; no request is in flight. */
	void (*close)(struct disk *d);

	/* v2. DISK_CHECK_* bits: the checks every backend would otherwise
	 * open its ops with, made once by the dispatcher, in the order of
	 * the bits, before it calls this disk's op. 0: none (the op checks). */
	uint32_t checks;
};

/* ---- handles ----------------------------------------------------------- */

/*
 * Creates a disk. @info is copied and validated: sector size a power of two
 * >= 512 (-EINVAL), physical sector size a power of two >= sector size
 * (-EINVAL), optimal_unmap_sectors 0 becomes 1. @priv is the backend's
 * (owned by it; freed in ops->close). @lower, for decorators, is the disk
 * being decorated: ownership passes to the new disk on success only.
 * On failure ops->close is NOT called. Returns 0 or -errno.
 */
int disk_new(const struct disk_ops *ops, const struct disk_info *info, void *priv,
	     struct disk *lower, struct disk **out);

/* Takes another reference; returns @d. */
struct disk *disk_ref(struct disk *d);
/* Drops a reference; the last one closes the disk and its lower disk. NULL
 * allowed. */
void disk_unref(struct disk *d);

/* Accessors. */
/* True when @d was created with @ops (to recognise one's own disks). */
bool disk_has_ops(const struct disk *d, const struct disk_ops *ops);
void *disk_priv(const struct disk *d);
struct disk *disk_lower(const struct disk *d);
const struct disk_info *disk_get_info(const struct disk *d);
uint64_t disk_sector_count(struct disk *d);
static inline uint32_t disk_sector_size(const struct disk *d) { return disk_get_info(d)->sector_size; }

/* Answers a BLOCK_STATUS request on @d with one allocated extent over its
 * range (range checked live): what the dispatcher does for a backend
 * without a block_status op, for decorators whose data is all data. */
int disk_block_status_data(struct disk *d, struct disk_io *io);

/* DISK_OK when [sector, sector+count) lies within @d's current sector
 * count (asked live, so it follows resizes), else DISK_ILLEGAL_BLOCK. For
 * a decorator that splits a request and must refuse it whole first. */
int disk_range_check_live(struct disk *d, uint64_t sector, uint64_t count);

/* Copies the lower disk's metadata into @info (for decorators that forward
 * metadata and change a few fields), without DISK_CAP_XFORM and with
 * adopt_bytes 0: a decorator that wants either must pass io->xform /
 * DISK_IO_ADOPT on with the caller's own iovec array and set them itself. */
void disk_info_inherit(struct disk_info *info, const struct disk *lower);

/* True when [sector, sector+count) is representable for sector @shift:
 * no overflow and sector + count <= INT64_MAX >> shift. */
bool disk_range_representable(uint64_t sector, uint64_t count, uint32_t shift);

/* Sum of the lengths of @iov; UINT64_MAX on overflow. */
uint64_t iov_length(const struct iovec *iov, int iovcnt);
/* Copies between a buffer and an iovec list starting at byte @off of the
 * list; returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, int iovcnt, size_t off, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, int iovcnt, size_t off, const void *buf, size_t len);
/* Zeroes @len bytes of the list from byte @off. */
void iov_memset(const struct iovec *iov, int iovcnt, size_t off, int c, size_t len);
/* Builds in @out (room @max) the sub-list covering bytes [off, off+len) of
 * @iov. Returns the number of entries, or -E2BIG if @max is too small. */
int iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
	      struct iovec *out, int max);

/* A position in an iovec list, for walking it forward once. */
struct iov_pos {
	int i;                                /* entry */
	size_t off;                           /* bytes of it consumed */
};

enum disk_xform_dir {
	DISK_XFORM_TO_IOV,      /* READ: buf -> request buffers */
	DISK_XFORM_FROM_IOV,    /* WRITE: request buffers -> buf */
	DISK_XFORM_IN_IOV,      /* in place in the request buffers; buf unused */
};

/*
 * For disks that honour io->xform: runs io->xform over @n sectors of
 * 1 << @shift bytes, the first at LBA @sector, between the flat buffer @buf
 * and @iov (io->iov or a slice of it) from position *@p, which is advanced
 * past them. Sectors that straddle iovec entries go through a bounce
 * sector (on the stack up to 4 KiB sectors, else from @io's reactor's
 * buffer cache); with FROM_IOV they are gathered into @buf and transformed
 * there. Returns 0 or -errno (fn's, or -ENOMEM).
 */
int disk_xform_iov(const struct disk_io *io, const struct iovec *iov, int iovcnt,
		   struct iov_pos *p, enum disk_xform_dir dir, void *buf, uint64_t sector,
		   uint64_t n, uint32_t shift);

/* ---- synchronous helpers (tests and tools) ----------------------------- */

/*
 * Submit one request and run the calling thread's reactor until it
 * completes. For tests and command-line tools only, never on the I/O path.
 * Return the disk_status (io errno in *os_errno when non-NULL).
 */
int disk_sync_read(struct disk *d, uint64_t sector, void *buf, size_t len);
int disk_sync_write(struct disk *d, uint64_t sector, const void *buf, size_t len, uint32_t flags);
int disk_sync_flush(struct disk *d);
int disk_sync_unmap(struct disk *d, uint64_t sector, uint64_t count, uint32_t flags);
int disk_sync_write_zeroes(struct disk *d, uint64_t sector, uint64_t count, uint32_t flags);
int disk_sync_block_status(struct disk *d, uint64_t sector, uint64_t count,
			   struct disk_extent *ext, uint32_t max, uint32_t *nr);
/* Submits a filled-in @io (done/opaque are overwritten) and waits. */
int disk_sync_io(struct disk *d, struct disk_io *io);

#endif
