/* SPDX-License-Identifier: MIT */
/*
 * scsi.h: the SCSI target core of libdiskemu (docs/scsi.md): logical units
 * over disks (a direct-access disk per SBC-3, a read-only DVD per MMC-6), a
 * LUN table per target (REPORT LUNS and the well-known LUN behaviour of
 * SPC-4), I_T nexuses with their unit attentions and reservations, and one
 * entry point that runs a CDB. Transports (iscsi/, vhost/ virtio-scsi)
 * bring CDBs and buffers; the core knows nothing of how they arrive.
 *
 * Notes on the design
 * -------------------
 * - Threads. A target, its LUs and nexuses are shared by every transport
 *   thread (each iSCSI session runs on one reactor, sessions on several).
 *   scsi_cmd_submit must be called on a reactor thread; the command's disk
 *   requests run on that thread and cmd->done runs later on it. State
 *   shared between nexuses (unit attentions, reservations, the PREVENT
 *   flag, mode pages, COMPARE AND WRITE range locks, DVD media) is locked
 *   inside the core; a transport needs no lock of its own for it.
 * - Data. Data-out is complete before submission (a transport gathers
 *   immediate, unsolicited and solicited data first); data-in goes into
 *   the room the transport gives. The core moves min(xfer_len, what the
 *   CDB asks) and reports what the CDB asked in want_len, so the
 *   transport can compute residuals (SAM-5 §5.4.2, RFC 7143 §11.4.5):
 *   want_len > xfer_len: overflow of want_len - xfer_len;
 *   want_len < xfer_len: underflow of xfer_len - want_len.
 * - Sense is fixed format (SPC-4 §4.5.3, response code 70h), 18 bytes.
 * - Errors: constructors return 0 or -errno with a message for humans.
 */
#ifndef DISKSTACK_SCSI_SCSI_H
#define DISKSTACK_SCSI_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct disk;
struct scsi_lu;
struct scsi_target;
struct scsi_nexus;

#define SCSI_CDB_MAX 32         /* 16-byte CDBs, and 32-byte variable-length ones */
#define SCSI_SENSE_MAX 32       /* fixed format uses 18 */
#define SCSI_MAX_LUNS 256       /* LUNs 0..255 per target (single-level, SAM-5 §4.7) */

/* SAM-5 status codes. */
enum scsi_status {
	SCSI_GOOD = 0x00,
	SCSI_CHECK_CONDITION = 0x02,
	SCSI_CONDITION_MET = 0x04,
	SCSI_BUSY = 0x08,
	SCSI_RESERVATION_CONFLICT = 0x18,
	SCSI_TASK_SET_FULL = 0x28,
	SCSI_ACA_ACTIVE = 0x30,
	SCSI_TASK_ABORTED = 0x40,
};

/* Sense keys (SPC-4 §4.5.6). */
enum scsi_sense_key {
	SCSI_SK_NO_SENSE = 0x0,
	SCSI_SK_RECOVERED_ERROR = 0x1,
	SCSI_SK_NOT_READY = 0x2,
	SCSI_SK_MEDIUM_ERROR = 0x3,
	SCSI_SK_HARDWARE_ERROR = 0x4,
	SCSI_SK_ILLEGAL_REQUEST = 0x5,
	SCSI_SK_UNIT_ATTENTION = 0x6,
	SCSI_SK_DATA_PROTECT = 0x7,
	SCSI_SK_ABORTED_COMMAND = 0xb,
	SCSI_SK_MISCOMPARE = 0xe,
};

/* Direction of a command's data, seen from the initiator. */
enum scsi_data_dir {
	SCSI_DIR_NONE = 0,
	SCSI_DIR_IN,            /* target to initiator (READ) */
	SCSI_DIR_OUT,           /* initiator to target (WRITE) */
};

/* ---- logical units -------------------------------------------------------- */

enum scsi_lu_type {
	SCSI_LU_DISK = 0,       /* direct-access block device (peripheral type 00h) */
	SCSI_LU_DVD,            /* CD/DVD device (05h): read-only, 2048-byte blocks, removable */
};

struct scsi_lu_opts {
	enum scsi_lu_type type;
	/* INQUIRY identification, space padded by the core; NULL = defaults
	 * ("DISKSTCK", "VIRTUAL DISK"/"VIRTUAL DVD", the package version). */
	const char *vendor;     /* <= 8 ASCII characters */
	const char *product;    /* <= 16 */
	const char *revision;   /* <= 4 */
	/* Unit serial number (VPD 80h); NULL = derived from the disk id, else
	 * from the target name and LUN. */
	const char *serial;
	bool removable;         /* INQUIRY RMB on a disk (a DVD always is) */
	/* Where APTPL persistent-reservation state lives (SPC-4 §5.13.5);
	 * NULL = APTPL is refused. Set for persistent disks (a file next to
	 * the disk image). Borrowed during scsi_lu_new only. */
	const char *pr_state_path;
};

/*
 * Makes a logical unit over @disk (the LU takes its own reference; a DVD
 * may start with @disk NULL: no medium). A disk LU needs a disk with
 * 512- or 4096-byte sectors, a DVD one whose size is a multiple of 2048
 * bytes (it is opened read-only whatever the disk says). Returns 0 or
 * -errno with a message in @err.
 */
int scsi_lu_new(struct disk *disk, const struct scsi_lu_opts *o, struct scsi_lu **out,
		char *err, size_t errlen);
/* What @lu is (the transport's asynchronous-notification classes differ). */
enum scsi_lu_type scsi_lu_type(const struct scsi_lu *lu);
/* Frees @lu once no command runs on it (after scsi_target_free, or for an
 * LU never added to a target). NULL allowed. */
void scsi_lu_free(struct scsi_lu *lu);
/* Host-initiated media change on a DVD LU: @disk (a new reference is
 * taken) replaces the medium, NULL removes it; the guest sees NOT READY,
 * then MEDIUM MAY HAVE CHANGED and the media event. -EBUSY when the guest
 * prevents removal and @force is false; -EINVAL on a disk LU. Any thread. */
int scsi_lu_change_media(struct scsi_lu *lu, struct disk *disk, bool force);

/* ---- targets ------------------------------------------------------------- */

/* A target (SAM-5 §4.6) named @name (an iSCSI name, borrowed). */
int scsi_target_new(const char *name, struct scsi_target **out);
/* Adds @lu as @lun (< SCSI_MAX_LUNS); the target owns it from then on
 * (also on failure). -EEXIST when the LUN is taken. Also while nexuses
 * run (hot-add): each gets 29h/00h on the new LU, REPORTED LUNS DATA HAS
 * CHANGED (3Fh/0Eh) on the others, and the listener SCSI_EVENT_LUN_ADDED.
 * Any thread. */
int scsi_target_add_lu(struct scsi_target *t, unsigned lun, struct scsi_lu *lu);
/* Hot-remove: LUN @lun disappears at once (new commands get LOGICAL
 * UNIT NOT SUPPORTED, REPORT LUNS leaves it out), every nexus gets
 * REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh) on the remaining LUs, the
 * listener hears SCSI_EVENT_LUN_REMOVED (before the drain), and the
 * call waits until the commands already running on it have finished,
 * then releases its disk. -ENOENT when there is no such LU. Any thread
 * but a reactor thread serving the target (it blocks). */
int scsi_target_remove_lu(struct scsi_target *t, unsigned lun);
/* The LU at @lun, or NULL. */
struct scsi_lu *scsi_target_lu(const struct scsi_target *t, unsigned lun);
const char *scsi_target_name(const struct scsi_target *t);
/* Frees the target and its LUs once every nexus is gone. NULL allowed. */
void scsi_target_free(struct scsi_target *t);

/* What a transport may pass on to its initiator unasked (virtio-scsi's
 * event queue); the nexuses get the unit attentions anyway. */
enum scsi_event {
	SCSI_EVENT_LUN_ADDED = 0,       /* scsi_target_add_lu after the first nexus */
	SCSI_EVENT_CAPACITY_CHANGED,    /* a disk LU's disk was resized (2Ah/09h) */
	SCSI_EVENT_MEDIA_CHANGED,       /* scsi_lu_change_media changed a DVD's medium */
	SCSI_EVENT_LUN_REMOVED,         /* scsi_target_remove_lu after the first nexus */
};
/* A listener: runs on whichever thread caused the event, with the
 * target's lock (and maybe a disk's watcher lock) held, so it must not
 * call into the core; it queues work for its own threads. */
typedef void scsi_event_fn(void *opaque, unsigned lun, enum scsi_event ev);
/* Sets the target's one listener (NULL: none). Once it returns, the
 * previous listener is not running and will not run. */
void scsi_target_set_event_fn(struct scsi_target *t, scsi_event_fn *fn, void *opaque);

/* ---- I_T nexuses ---------------------------------------------------------- */

/* SPC-4 §7.6.4 PROTOCOL IDENTIFIER values a transport passes. */
enum scsi_protocol {
	SCSI_PROTO_SAS = 0x6,   /* used by transports without names of their own */
	SCSI_PROTO_ISCSI = 0x5,
};

/* Who the initiator port is. For iSCSI (RFC 7143 §10.1.1 and SPC-4
 * §7.6.4.6): @name is the initiator name and @port its port name,
 * "<name>,i,0x<ISID as 12 hex digits>"; the port identifies the nexus for
 * reservations and unit attentions, the name is what TransportIDs carry. */
struct scsi_initiator_id {
	enum scsi_protocol protocol;
	char name[224];
	char port[256];
};

/* Opens an I_T nexus between @id and @t (an iSCSI session). Its first
 * command gets the unit attention POWER ON, RESET, OR BUS DEVICE RESET
 * OCCURRED (29h/00h) as SAM-5 §5.14 asks after a nexus forms. */
int scsi_nexus_new(struct scsi_target *t, const struct scsi_initiator_id *id,
		   struct scsi_nexus **out);
/* I_T nexus loss (logout or a lost connection), once none of its commands
 * runs any more: its SPC-2 reservation and PREVENT state go; persistent
 * reservations and registrations stay (SPC-4 §5.13). NULL allowed. */
void scsi_nexus_free(struct scsi_nexus *n);
/* The transport's answer to "has this nexus's initiator gone?": true once
 * the initiator can send no more commands on it (its connection closed),
 * even if the transport has not yet noticed and called scsi_nexus_free.
 * The core asks only where another nexus waits on this one's state
 * (a PREVENT in force when an eject arrives), under the target's lock,
 * from any thread: @gone must not block and must stay callable until
 * scsi_nexus_free returns. An initiator that drops its connection and
 * logs in again at once then finds the old nexus's PREVENT released, as
 * SPC-4 §6.15 says nexus loss does, however the two connections'
 * threads are scheduled. Without a probe a nexus counts as present. */
void scsi_nexus_set_probe(struct scsi_nexus *n, bool (*gone)(void *opaque), void *opaque);

/* ---- commands -------------------------------------------------------------- */

struct scsi_cmd {
	/* Set by the transport. */
	struct scsi_nexus *nexus;
	uint64_t lun;                   /* as on the wire (SAM-5 §4.7: 8 bytes, big endian) */
	uint8_t cdb[SCSI_CDB_MAX];
	uint8_t cdb_len;
	enum scsi_data_dir dir;         /* what the transport announced */
	const struct iovec *iov;        /* data-out bytes, or room for data-in; borrowed until done */
	int iovcnt;
	uint32_t xfer_len;              /* bytes @iov holds (iSCSI Expected Data Transfer Length) */
	uint8_t task_attr;              /* SAM-5 task attribute: 0 SIMPLE, 1 ORDERED, 2 HEAD OF QUEUE, 3 ACA */
	uint64_t tag;                   /* the transport's task tag (logs) */
	void (*done)(struct scsi_cmd *cmd);   /* on the submitting reactor thread */
	void *opaque;                   /* the transport's */

	/* Results, valid in done(). */
	uint8_t status;                 /* enum scsi_status */
	uint32_t data_len;              /* data-in bytes written at the start of @iov */
	uint64_t want_len;              /* bytes the CDB asked to move (see the notes) */
	uint8_t sense[SCSI_SENSE_MAX];  /* with CHECK CONDITION */
	uint8_t sense_len;

	/* Private to the core. */
	void *core;                     /* free for the handler running the command (sbc.c, ...) */
	uintptr_t core_ctx[8];          /* lu.c's per-command state: no allocation per command */
};

/* Runs @cmd (see the notes). Always completes through cmd->done, never
 * inside this call. On a reactor thread. */
void scsi_cmd_submit(struct scsi_cmd *cmd);

/* ---- task management (SAM-5 §7) ------------------------------------------- */

/* LOGICAL UNIT RESET of @lun from @n, after the transport has ended the
 * LU's commands: SPC-2 reservations and PREVENT state go, mode parameters
 * return to their defaults, and the nexuses get the unit attention
 * 29h/03h as SAM-5 §6.3.3 says. -ENOENT: no such LUN. */
int scsi_lu_reset(struct scsi_nexus *n, uint64_t lun);
/* TARGET WARM RESET from @n: scsi_lu_reset on every LU, with 29h/02h. */
void scsi_target_reset(struct scsi_nexus *n);
/* I_T NEXUS RESET of @n (SAM-5 §7.7), after the transport has ended its
 * commands: the nexus loss of scsi_nexus_free (its SPC-2 reservation and
 * PREVENT go) while the nexus stays, with the unit attention I_T NEXUS
 * LOSS OCCURRED (29h/07h) on every LU. */
void scsi_nexus_reset(struct scsi_nexus *n);

/* ---- helpers for transports and tests --------------------------------------- */

/* Decodes a wire LUN (peripheral or flat addressing, single level) into
 * 0..16383; -1 when it is not one the core can address. */
int scsi_lun_decode(uint64_t wire);
/* Encodes LUN @lun (< 16384) the way REPORT LUNS lists it. */
uint64_t scsi_lun_encode(unsigned lun);
/* Whether @cdb (at least its first 10 bytes) moves data from the
 * initiator (WRITE, MODE SELECT, PERSISTENT RESERVE OUT, ...; SPC-4
 * Annex D's operation codes): a transport that sees the direction of the
 * buffers (virtio-scsi) refuses a command whose buffers go the other way
 * before it runs. */
bool scsi_cdb_data_out(const uint8_t *cdb);
/* The sense key, ASC and ASCQ of fixed-format @sense (0 when absent). */
void scsi_sense_parse(const uint8_t *sense, size_t len, uint8_t *key, uint8_t *asc, uint8_t *ascq);
/* "CHECK CONDITION ILLEGAL REQUEST 24/00" style text for logs. */
const char *scsi_status_str(uint8_t status);

#endif
