/* SPDX-License-Identifier: MIT */
/*
 * nvme.h: the NVMe command core of libdiskemu (docs/nvme.md): an NVM
 * subsystem whose namespaces are disks, its controllers (one per host
 * association: a PCI function, an NVMe/TCP admin queue), and one entry
 * point that runs a 64-byte submission queue entry and yields a 16-byte
 * completion queue entry. Command layouts and status codes follow the
 * NVM Express Base Specification 2.0 and the NVM Command Set
 * Specification 1.0.
 *
 * Notes on the design
 * -------------------
 * - Transport-agnostic. The core sees no register, doorbell, queue, PRP,
 *   SGL or PDU. A transport hands it a submission entry and an abstract
 *   data transfer (struct nvmeemu_data_ops: get host data, put controller
 *   data, by byte offset into the command's data buffer), and gets the
 *   completion entry back. The PCI side fills the transfer from PRPs or
 *   SGLs in guest memory; the TCP side from in-capsule data, H2CData and
 *   C2HData PDUs. What belongs to the transport is never decoded here:
 *   PSDT and the data pointer (DPTR), SQHD, the phase tag, queue
 *   creation and deletion (admin 00h, 01h, 04h, 05h), Doorbell Buffer
 *   Config (7Ch) and Fabrics commands (7Fh) -- those opcodes complete
 *   with Invalid Command Opcode if they reach the core.
 * - Queue-agnostic. The core keeps no per-queue state: admin commands
 *   (qid 0) and I/O commands (qid > 0) of one controller may run on any
 *   reactor threads at once. Admin commands run in the order they are
 *   submitted only as far as the transport submits them in order.
 * - Threads. nvmeemu_cmd_submit must be called on a reactor thread; the
 *   command's disk requests run on that thread and cmd->done runs later
 *   on it, never inside nvmeemu_cmd_submit. Controller and subsystem
 *   state shared between threads is locked inside the core.
 * - Per-thread data path. Because a command starts and ends on one
 *   thread, the core keeps what every I/O command touches per thread,
 *   not per controller: the commands a thread runs on a namespace share
 *   one counted reference (taken when the first starts, dropped when the
 *   last ends), and the SMART / Health counters are kept per thread and
 *   summed when Get Log Page asks. At a queue depth above one, a command
 *   thus makes no atomic read-modify-write and writes no cache line
 *   another thread writes. A transport need do nothing for it beyond the
 *   rule above: calling done on another thread, or submitting a command
 *   again before its done ran, breaks it.
 * - Data movement. Host data (Write, Compare, Dataset Management ranges,
 *   reservation parameters, Set Features data) is pulled with get, and
 *   controller data (Read, Identify, log pages, Reservation Report) is
 *   pushed with put, both synchronous: a transport gathers what it must
 *   (R2T/H2CData over TCP) before it submits the command, as the iSCSI
 *   target does. Read and Write data go to the disk through a bounce
 *   buffer from the reactor's buffer cache, or -- when the transport
 *   offers map -- straight between the disk and the transport's memory.
 * - Identity. Each controller has a host identifier (128-bit from a
 *   fabrics Connect, or set by Set Features Host Identifier on PCI) that
 *   every disk request carries as struct disk_initiator (with the
 *   controller ID), so the disk's reservations (prwrap, a block device)
 *   tell hosts apart. A namespace over a disk without DISK_CAP_PR gets a
 *   prwrap of its own.
 * - Errors: constructors return 0 or -errno with a message for humans;
 *   commands always complete, with an NVMe status.
 */
#ifndef DISKSTACK_NVME_EMUL_NVME_H
#define DISKSTACK_NVME_EMUL_NVME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct disk;
struct nvmeemu_subsys;
struct nvmeemu_ctrl;
struct nvmeemu_cmd;

#define NVMEEMU_SQE_BYTES 64
#define NVMEEMU_CQE_BYTES 16
#define NVMEEMU_MAX_NSID 1024   /* Identify Controller NN: namespaces 1..1024 */
#define NVMEEMU_MAX_AER 4       /* Asynchronous Event Requests held at once (AERL 3) */
#define NVMEEMU_MAX_VECTORS 2048 /* interrupt vectors a controller may declare */

/* ---- status ------------------------------------------------------------- */

/*
 * A completion's status field without the phase tag, as the 15 bits
 * 31:17 of CQE dword 3 hold it (NVMe Base spec §4.6.1): bits 7:0 SC, 10:8 SCT,
 * 12:11 CRD, 13 More, 14 DNR. The constants below are SCT << 8 | SC.
 */
#define NVMEEMU_DNR  0x4000u
#define NVMEEMU_MORE 0x2000u
#define NVMEEMU_SCT(st) (((st) >> 8) & 7u)
#define NVMEEMU_SC(st)  ((st) & 0xffu)

enum nvmeemu_status {
	/* Generic Command Status (SCT 0) */
	NVMEEMU_SUCCESS                 = 0x000,
	NVMEEMU_INVALID_OPCODE          = 0x001,
	NVMEEMU_INVALID_FIELD           = 0x002,
	NVMEEMU_DATA_XFER_ERROR         = 0x004,
	NVMEEMU_INTERNAL_ERROR          = 0x006,
	NVMEEMU_ABORT_REQUESTED         = 0x007,
	NVMEEMU_ABORT_SQ_DELETION       = 0x008,
	NVMEEMU_INVALID_NS              = 0x00B,    /* Invalid Namespace or Format */
	NVMEEMU_CMD_SEQ_ERROR           = 0x00C,
	NVMEEMU_SGL_LENGTH_INVALID      = 0x00F,    /* Data SGL Length Invalid */
	NVMEEMU_PRP_OFFSET_INVALID      = 0x013,
	NVMEEMU_HOSTID_INCONSISTENT     = 0x018,    /* Host Identifier Inconsistent Format */
	NVMEEMU_ABORT_PREEMPT           = 0x01B,    /* Command Aborted due to Preempt and Abort */
	NVMEEMU_LBA_RANGE               = 0x080,    /* LBA Out of Range */
	NVMEEMU_CAPACITY_EXCEEDED       = 0x081,
	NVMEEMU_NS_NOT_READY            = 0x082,
	NVMEEMU_RESERVATION_CONFLICT    = 0x083,
	/* Command Specific Status (SCT 1) */
	NVMEEMU_AER_LIMIT               = 0x105,    /* Asynchronous Event Request Limit Exceeded */
	NVMEEMU_INVALID_LOG_PAGE        = 0x109,
	NVMEEMU_FEAT_NOT_SAVEABLE       = 0x10D,
	NVMEEMU_FEAT_NOT_CHANGEABLE     = 0x10E,
	NVMEEMU_FEAT_NOT_NS_SPECIFIC    = 0x10F,
	NVMEEMU_NS_ALREADY_ATTACHED     = 0x118,
	NVMEEMU_NS_NOT_ATTACHED         = 0x11A,
	NVMEEMU_CTRL_LIST_INVALID       = 0x11C,
	NVMEEMU_WRITE_TO_RO             = 0x182,    /* Attempted Write to Read Only Range */
	/* Media and Data Integrity Errors (SCT 2) */
	NVMEEMU_WRITE_FAULT             = 0x280,
	NVMEEMU_UNRECOVERED_READ        = 0x281,
	NVMEEMU_GUARD_CHECK             = 0x282,
	NVMEEMU_APPTAG_CHECK            = 0x283,
	NVMEEMU_REFTAG_CHECK            = 0x284,
	NVMEEMU_COMPARE_FAILURE         = 0x285,
};

/* Short text for a status field ("LBA Out of Range"), DNR ignored. Never NULL. */
const char *nvmeemu_status_str(uint16_t status);

/* The NVMe status (with DNR where a retry cannot succeed) for a finished
 * disk request: the one table of docs/nvme.md, for the core and for any
 * transport that talks to a disk directly. @io is borrowed. */
struct disk_io;
uint16_t nvmeemu_disk_status(const struct disk_io *io);

/* ---- the subsystem -------------------------------------------------------- */

struct nvmeemu_subsys_opts {
	/* Identify Controller strings, space padded by the core; NULL: the
	 * defaults (a serial derived from the NQN, "diskstack NVMe", the
	 * package version). ASCII, at most 20 / 40 / 8 characters. */
	const char *serial;
	const char *model;
	const char *firmware;
	/* The subsystem NQN (at most 223 bytes); NULL: one derived from the
	 * serial, nqn.2014-08.org.nvmexpress:uuid:<uuid>. */
	const char *nqn;
	uint16_t vid, ssvid;            /* PCI vendor / subsystem vendor IDs (0 over fabrics) */
	/* Maximum Data Transfer Size, a power of two of 4 KiB pages; 0: 6
	 * (256 KiB). Read, Write and Compare longer than this fail with
	 * Invalid Field. */
	uint8_t mdts;
	/* NVMe over Fabrics (nvmf/): the host identifier comes from Connect
	 * and cannot be set (Set Features 81h is a Command Sequence Error),
	 * Identify reports the fabrics fields below, and several
	 * controllers share namespaces (CMIC bit 1, NMIC bit 0). */
	bool fabrics;
	bool multi_ctrl;                /* CMIC bit 1 / NMIC bit 0 without fabrics */
	uint32_t sgls;                  /* Identify SGLS as the transport supports them */
	uint32_t ioccsz, iorcsz;        /* fabrics capsule sizes, 16-byte units */
	uint16_t maxcmd;                /* Identify MAXCMD (0: not reported) */
	/* The transport answers admin 00h, 01h, 04h and 05h (I/O queue
	 * creation and deletion, PCI): they are listed as supported in the
	 * Commands Supported and Effects log. */
	bool queue_admin;
};

/* Makes an empty subsystem. Returns 0 or -errno with a message in @err. */
int nvmeemu_subsys_new(const struct nvmeemu_subsys_opts *o, struct nvmeemu_subsys **out,
		       char *err, size_t errlen);
/* Frees @s and its namespaces once every controller is freed. NULL allowed. */
void nvmeemu_subsys_free(struct nvmeemu_subsys *s);
/* The subsystem NQN (owned by @s). */
const char *nvmeemu_subsys_nqn(const struct nvmeemu_subsys *s);

/*
 * Adds namespace @nsid (1..NVMEEMU_MAX_NSID) over @disk (the namespace
 * takes its own reference) and attaches it to every controller, which
 * each get a Namespace Attribute Changed event. Needs 512-byte to
 * 64 KiB sectors. A disk without DISK_CAP_PR gets a prwrap of the
 * namespace's own. Any thread. Returns 0, -EEXIST (@nsid is taken),
 * -EINVAL (bad @nsid or disk), -ENOMEM, with a message in @err.
 */
int nvmeemu_subsys_add_ns(struct nvmeemu_subsys *s, uint32_t nsid, struct disk *disk,
			  char *err, size_t errlen);
/* Whether namespace @nsid is attached to the subsystem now (a removal
 * hides it at its start, before it waits). Any thread. */
bool nvmeemu_subsys_has_ns(const struct nvmeemu_subsys *s, uint32_t nsid);
/* Detaches namespace @nsid from every controller (each gets the event)
 * and drops it; commands still running on it finish normally, and the
 * call returns once they have (so a flush of the disk after it covers
 * every write the namespace took); a command submitted after it began
 * fails with Invalid Namespace. -ENOENT when there is no such
 * namespace. Any thread but a reactor thread serving the subsystem (it
 * blocks). */
int nvmeemu_subsys_remove_ns(struct nvmeemu_subsys *s, uint32_t nsid);

/* ---- controllers ---------------------------------------------------------- */

struct nvmeemu_ctrl_opts {
	uint16_t cntlid;                /* Controller ID (fabrics: the one Connect returns) */
	/* The host identifier: 16 bytes (fabrics, EXHID), 8, or 0 (none yet:
	 * disk requests are anonymous until Set Features 81h sets one). */
	uint8_t host_id[16];
	uint8_t host_id_len;
	/* The most I/O submission and completion queues the transport can
	 * run; Set Features Number of Queues grants at most this (>= 1). */
	uint16_t max_io_queues;
	/* Interrupt vectors (PCI MSI-X); 0: none (fabrics), and the
	 * interrupt features 08h and 09h are refused. */
	uint16_t vectors;
};

/*
 * A controller of @s with every namespace of @s attached. Returns 0,
 * -EINVAL (host_id_len not 0, 8 or 16; vectors too many), -EEXIST (the
 * cntlid is taken), -ENOMEM.
 */
int nvmeemu_ctrl_new(struct nvmeemu_subsys *s, const struct nvmeemu_ctrl_opts *o,
		     struct nvmeemu_ctrl **out);
/* Resets then frees @c once none of its commands runs, held AERs aside
 * (they complete with Command Aborted due to SQ Deletion, their done()
 * posted to their reactors). NULL allowed. Any thread. */
void nvmeemu_ctrl_free(struct nvmeemu_ctrl *c);
/*
 * Controller reset (CC.EN 1 -> 0, the end of a fabrics association):
 * held AERs complete with Command Aborted due to SQ Deletion (done()
 * posted to each one's reactor), features return to their defaults,
 * pending events, the changed-namespace list, the error log and the
 * reservation notification log are dropped. Commands still running are
 * the transport's to drain first. The host identifier and attached
 * namespaces stay. Any thread.
 */
void nvmeemu_ctrl_reset(struct nvmeemu_ctrl *c);
uint16_t nvmeemu_ctrl_cntlid(const struct nvmeemu_ctrl *c);

/* Attaches / detaches namespace @nsid of the subsystem to @c, with a
 * Namespace Attribute Changed event (what the Namespace Attachment
 * command does, for the host side). -ENOENT: no such namespace;
 * -EEXIST / -ENXIO: already attached / not attached. Any thread. */
int nvmeemu_ctrl_attach_ns(struct nvmeemu_ctrl *c, uint32_t nsid);
int nvmeemu_ctrl_detach_ns(struct nvmeemu_ctrl *c, uint32_t nsid);

/* The transport tells how many I/O queues (SQs plus CQs) exist: Set
 * Features Number of Queues and Host Identifier are Command Sequence
 * Errors while any does (NVMe Base spec §5.27.1.5). Any thread. */
void nvmeemu_ctrl_set_io_queues(struct nvmeemu_ctrl *c, unsigned count);
/* The I/O queues Set Features Number of Queues granted (1-based): a
 * transport refuses a queue ID above them. Before any Set, the maximum. */
void nvmeemu_ctrl_granted_queues(const struct nvmeemu_ctrl *c, uint16_t *nsq, uint16_t *ncq);
/* Keep Alive Timeout in ms (Set Features 0Fh; fabrics: the transport sets
 * Connect's KATO with this); 0 = disabled. Setting it restarts the timer. */
uint32_t nvmeemu_ctrl_kato_ms(const struct nvmeemu_ctrl *c);
void nvmeemu_ctrl_set_kato_ms(struct nvmeemu_ctrl *c, uint32_t ms);
/* True when a KATO is set and no command arrived for that long before
 * @now_ns (reactor_now_ns()): the transport then ends the association
 * (NVMe Base spec §3.9). Every submitted command counts as traffic. */
bool nvmeemu_ctrl_kato_expired(const struct nvmeemu_ctrl *c, uint64_t now_ns);
/* Interrupt Coalescing (08h) as the host set it: THR bits 7:0, TIME 15:8. */
uint32_t nvmeemu_ctrl_coalescing(const struct nvmeemu_ctrl *c);
/* Whether vector @iv is excluded from coalescing (09h CD). */
bool nvmeemu_ctrl_vector_no_coalescing(const struct nvmeemu_ctrl *c, uint16_t iv);

/* ---- data transfer -------------------------------------------------------- */

/*
 * How a command's data reaches the host. Offsets count from the start of
 * the command's data buffer (what DPTR describes); lengths are what the
 * command's own fields ask for (the core never moves more). Called on the
 * command's reactor thread, only between submission and completion.
 * Errors, which end the command with the status in brackets:
 *   -EFAULT   the host memory cannot be read or written [Data Transfer Error]
 *   -EMSGSIZE the buffer the host described is shorter [Data SGL Length Invalid]
 *   -EINVAL   the data pointer is malformed [PRP Offset Invalid]
 *   other     [Data Transfer Error]
 */
struct nvmeemu_data_ops {
	/* Required. Copies @len bytes of host data at byte @off into @buf. */
	int (*get)(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len);
	/* Required. Copies @len bytes of @buf to the host's buffer at @off. */
	int (*put)(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len);
	/* Optional. Describes bytes [off, off + len) of the buffer in place
	 * as at most @max iovec entries (guest memory mapped in this
	 * process, a receive buffer), valid until the command completes:
	 * Read and Write then move data between the disk and them with no
	 * copy. Returns the entry count, -E2BIG or -EOPNOTSUPP to fall back
	 * on get/put (a bounce buffer), or an error above. */
	int (*map)(struct nvmeemu_cmd *cmd, uint64_t off, size_t len, struct iovec *iov, int max);
};

/* ---- commands --------------------------------------------------------------- */

struct nvmeemu_cmd {
	/* Set by the transport. */
	struct nvmeemu_ctrl *ctrl;
	uint16_t qid;                   /* 0: admin; else an I/O queue (the CQE's SQID) */
	uint8_t sqe[NVMEEMU_SQE_BYTES]; /* the submission entry, little-endian as on the wire */
	/* NULL: the command has no data buffer (every get/put then fails
	 * with -EMSGSIZE: Data SGL Length Invalid). Borrowed until done(). */
	const struct nvmeemu_data_ops *data;
	void (*done)(struct nvmeemu_cmd *cmd);  /* on the submitting reactor thread */
	void *opaque;                   /* the transport's */

	/* Results, valid in done(). */
	uint8_t cqe[NVMEEMU_CQE_BYTES]; /* DW0, DW1, SQHD 0, SQID = qid, CID, status field with
	                                 * phase 0: the transport sets SQHD and the phase tag */
	uint16_t status;                /* the status field (as in cqe, without the phase) */

	/* Private to the core. */
	uintptr_t core_ctx[20];
};

/* Runs @cmd (see the notes). Always completes through cmd->done, never
 * inside this call. On a reactor thread. */
void nvmeemu_cmd_submit(struct nvmeemu_cmd *cmd);

/* CQE accessors. */
uint32_t nvmeemu_cqe_dw0(const uint8_t cqe[NVMEEMU_CQE_BYTES]);
uint16_t nvmeemu_cqe_cid(const uint8_t cqe[NVMEEMU_CQE_BYTES]);
/* The status field of @cqe (without the phase tag). */
uint16_t nvmeemu_cqe_status(const uint8_t cqe[NVMEEMU_CQE_BYTES]);

#endif
