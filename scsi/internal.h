/* SPDX-License-Identifier: MIT */
/*
 * internal.h: what the files of the SCSI core share (not installed): the
 * opcode tables, the helpers every command handler uses to answer, the
 * unit-attention calls, and the entry points of the persistent-reservation
 * (pr.c) and DVD (dvd.c) parts. The LU, target, nexus and per-command
 * structures are lu.c's; handlers reach them only through these calls.
 *
 *   lu.c    targets, LUNs, nexuses, unit attentions, dispatch, completion
 *   sense.c sense building and the disk_status table
 *   spc.c   SPC-4 commands of every LU (INQUIRY and VPD, MODE SENSE/SELECT,
 *           REPORT LUNS, TEST UNIT READY, REQUEST SENSE, REPORT SUPPORTED
 *           OPERATION CODES, RESERVE/RELEASE, PREVENT ALLOW, START STOP)
 *   sbc.c   SBC-3 commands of a disk (READ/WRITE/VERIFY/WRITE SAME/UNMAP/
 *           COMPARE AND WRITE/SYNCHRONIZE CACHE/READ CAPACITY/GET LBA STATUS)
 *   pr.c    PERSISTENT RESERVE IN/OUT over the disk's PR calls
 *   dvd.c   the MMC-6 DVD
 *
 * A handler gets the command, decodes its CDB, and ends it exactly once
 * with scsi_cmd_finish, at once or from a disk request's completion. It
 * sets the outcome before: nothing (GOOD), scsi_cmd_sense*, or
 * scsi_cmd_status. Data-in goes through scsi_cmd_data_in, data-out comes
 * from scsi_cmd_data_out; both honour xfer_len and set want_len.
 */
#ifndef DISKSTACK_SCSI_INTERNAL_H
#define DISKSTACK_SCSI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scsi/scsi.h"
#include "storage/disk.h"

/* ---- the opcode tables ------------------------------------------------------ */

/* Flags of struct scsi_op. */
enum {
	SCSI_OP_WRITES      = 1u << 0,  /* changes the medium: DATA PROTECT on a read-only LU */
	SCSI_OP_NO_UA       = 1u << 1,  /* runs despite a pending unit attention (INQUIRY,
	                                 * REPORT LUNS, REQUEST SENSE: SAM-5 §5.14) */
	SCSI_OP_NO_MEDIUM   = 1u << 2,  /* runs without a medium (DVD) */
	SCSI_OP_SPC2_ALLOWED = 1u << 3, /* allowed to other nexuses under an SPC-2
	                                 * RESERVE (SPC-2 §5.5.1: INQUIRY, REPORT LUNS,
	                                 * RELEASE, REQUEST SENSE, PR IN ...) */
	SCSI_OP_MEDIUM_IO   = 1u << 4,  /* data I/O whose disk requests carry the nexus's
	                                 * initiator: the disk checks persistent
	                                 * reservations itself, the core does not ask
	                                 * scsi_pr_conflicts (READ, WRITE, VERIFY ...) */
};

/*
 * One command a LU type runs. The core looks an incoming CDB up in the
 * tables of the LU's type (DVD: scsi_mmc_ops first, then scsi_spc_ops;
 * disk: scsi_sbc_ops, then scsi_spc_ops) and answers REPORT SUPPORTED
 * OPERATION CODES (SPC-4 §6.35) from the same entries.
 */
struct scsi_op {
	uint8_t opcode;
	bool has_sa;                    /* service action in the CDB (byte 1 bits 0-4, or
	                                 * bytes 8-9 of a variable-length CDB) */
	uint16_t sa;
	uint8_t cdb_len;                /* bytes of usage[] that are valid */
	uint8_t usage[16];              /* CDB usage data: the bits the command looks at */
	uint32_t flags;                 /* SCSI_OP_* */
	void (*run)(struct scsi_cmd *cmd);
	const char *name;               /* "READ(10)", for logs */
};

/* The first CDB byte (>= 1) with a bit set that @op's usage data does not
 * have, its highest such bit in *@bit; -1 when none: the check SPC-4 asks
 * of reserved fields. */
int scsi_op_bad_field(const struct scsi_op *op, const uint8_t *cdb, int *bit);

/* Each table ends with an entry whose run is NULL. */
extern const struct scsi_op scsi_spc_ops[];    /* spc.c: primary commands, every type */
extern const struct scsi_op scsi_sbc_ops[];    /* sbc.c: direct-access disks */
extern const struct scsi_op scsi_mmc_ops[];    /* dvd.c: the DVD */

/* ---- answering a command ------------------------------------------------- */

/* CHECK CONDITION with fixed-format sense @key/@asc/@ascq. */
void scsi_cmd_sense(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq);
/* ILLEGAL REQUEST / INVALID FIELD IN CDB (24h/00h) or, with !@in_cdb,
 * INVALID FIELD IN PARAMETER LIST (26h/00h), with the sense-key specific
 * field pointer (SPC-4 §4.5.2.4.2) at byte @byte, bit @bit (-1: none). */
void scsi_cmd_invalid_field(struct scsi_cmd *cmd, bool in_cdb, uint16_t byte, int bit);
/* CHECK CONDITION with @key/@asc/@ascq and the INFORMATION field set to
 * @info (VALID bit on), e.g. the first LBA that miscompared. */
void scsi_cmd_sense_info(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
			 uint64_t info);
/* A status without sense (RESERVATION CONFLICT, BUSY, TASK SET FULL). */
void scsi_cmd_status(struct scsi_cmd *cmd, uint8_t status);
/* Maps a finished disk request's status onto @cmd (scsi/sense.c's table:
 * status, sense key, ASC/ASCQ, and @lba as the information field where
 * the table says so). */
void scsi_cmd_disk_status(struct scsi_cmd *cmd, const struct disk_io *io, uint64_t lba);

/* Data-in: copies @len bytes of @buf to the start of cmd->iov, cut to
 * @alloc_len (the CDB's ALLOCATION LENGTH) and to cmd->xfer_len; sets
 * data_len and want_len = min(@len, @alloc_len). */
void scsi_cmd_data_in(struct scsi_cmd *cmd, const void *buf, size_t len, size_t alloc_len);
/* Data-out: copies up to @len bytes of the command's data-out into @buf
 * (zero-filling what xfer_len lacks) and sets want_len = @len. Returns the
 * bytes that came from the initiator. */
size_t scsi_cmd_data_out(struct scsi_cmd *cmd, void *buf, size_t len);

/* Ends @cmd: done() runs on the submitting thread, never from inside
 * scsi_cmd_submit. Exactly once per command. */
void scsi_cmd_finish(struct scsi_cmd *cmd);

/* The LU a command addresses (NULL: the well-known or an absent LUN). */
struct scsi_lu *scsi_cmd_lu(const struct scsi_cmd *cmd);
/* The target of the command's nexus (also for an absent LUN). */
struct scsi_target *scsi_cmd_target(const struct scsi_cmd *cmd);
/* The disk the command's I/O goes to (the PR front's, see scsi_pr_disk;
 * NULL: a DVD without medium). Borrowed: valid until the command
 * finishes (a media change waits for it). */
struct disk *scsi_cmd_disk(const struct scsi_cmd *cmd);
/* Fills a disk request for @cmd: its initiator (the nexus's), reactor
 * context, done callback and @cmd as io->opaque. The request comes from
 * the reactor's pool (disk_io_get); the handler puts it back with
 * disk_io_put on the command's reactor once it is done with it (it may
 * submit it again for a next step first). NULL when the pool is empty
 * and allocation fails. */
struct disk_io *scsi_cmd_io(struct scsi_cmd *cmd, void (*done)(struct disk_io *io));

/* What handlers read of a LU. */
const struct scsi_lu_opts *scsi_lu_opts(const struct scsi_lu *lu);   /* strings padded, never NULL */
unsigned scsi_lu_lun(const struct scsi_lu *lu);
struct scsi_target *scsi_lu_target(const struct scsi_lu *lu);
/* Logical block size (the disk's sector size; 2048 on a DVD). */
uint32_t scsi_lu_block_size(const struct scsi_lu *lu);
/* Whether writes may sit in a volatile cache: the caching mode page's
 * WCE bit (SBC-3 §6.4.5), which starts as the disk's
 * DISK_CAP_VOLATILE_CACHE and can be changed by MODE SELECT. With WCE
 * off every write is sent with DISK_IO_FUA. */
bool scsi_lu_wce(const struct scsi_lu *lu);
/* Read-only: the disk says so, a DVD, or SWP is set. */
bool scsi_lu_read_only(const struct scsi_lu *lu);
/* Whether some nexus holds PREVENT ALLOW MEDIUM REMOVAL's prevent
 * (SPC-4 §6.15; the core keeps it per nexus and drops a nexus's on
 * reset and nexus loss). */
bool scsi_lu_removal_prevented(const struct scsi_lu *lu);
/* The same for an eject or medium change about to be refused: first
 * drops the PREVENT of nexuses whose initiator is gone (the nexus loss
 * of scsi_nexus_set_probe), then answers. Takes the target's lock. */
bool scsi_lu_removal_blocked(struct scsi_lu *lu);
struct scsi_pr *scsi_lu_pr(const struct scsi_lu *lu);
struct scsi_dvd *scsi_lu_dvd(const struct scsi_lu *lu);   /* NULL on a disk */
/* sbc.c's per-LU state (COMPARE AND WRITE range locks), made by
 * scsi_sbc_lu_init when a disk LU is created. */
struct scsi_sbc *scsi_lu_sbc(const struct scsi_lu *lu);
int scsi_sbc_lu_init(struct scsi_lu *lu, struct scsi_sbc **out);
void scsi_sbc_lu_fini(struct scsi_sbc *sbc);

/* What sbc.c enforces, in logical blocks of the LU, for spc.c to
 * advertise in VPD B0h (Block Limits) and B2h (Logical Block
 * Provisioning) so that the pages and the commands never disagree. */
struct scsi_sbc_limits {
	uint32_t max_xfer_blocks;        /* MAXIMUM TRANSFER LENGTH */
	uint8_t max_caw_blocks;          /* MAXIMUM COMPARE AND WRITE LENGTH */
	uint64_t max_write_same_blocks;  /* MAXIMUM WRITE SAME LENGTH (WSNZ is 0) */
	uint32_t max_unmap_blocks;       /* MAXIMUM UNMAP LBA COUNT (0 without unmap) */
	uint32_t max_unmap_descriptors;  /* MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (0 without) */
	uint32_t unmap_granularity;      /* OPTIMAL UNMAP GRANULARITY */
	bool lbpu;                       /* UNMAP and WRITE SAME(10/16) with UNMAP deallocate:
	                                  * LBPME, LBPU, LBPWS, LBPWS10 */
	bool lbprz;                      /* deallocated blocks read as zeroes (LBPRZ) */
	uint8_t lbppbe;                  /* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT */
};
/* Fills @out for disk LU @lu. Any thread. */
void scsi_sbc_limits(const struct scsi_lu *lu, struct scsi_sbc_limits *out);

/* What lu.c keeps for spc.c's commands. */
/* A stable 16-byte identity of @lu (VPD 83h designators, the default
 * serial): the disk id on a disk LU whose disk has one, else derived from
 * the target name and the LUN. */
void scsi_lu_uid(const struct scsi_lu *lu, uint8_t uid[16]);
/* REQUEST SENSE: takes the oldest unit attention pending for the
 * command's nexus on its LU (SPC-4 §6.39); false when none is. */
bool scsi_cmd_take_ua(struct scsi_cmd *cmd, uint8_t *asc, uint8_t *ascq);
/* SPC-2 RESERVE(6)/(10) for the command's nexus: false when another
 * nexus holds the reservation (SPC-2 §7.21). RELEASE: drops it when the
 * command's nexus holds it, else nothing (SPC-2 §7.17). */
bool scsi_lu_spc2_reserve(struct scsi_cmd *cmd);
void scsi_lu_spc2_release(struct scsi_cmd *cmd);
/* PREVENT ALLOW MEDIUM REMOVAL: sets the command's nexus's prevent bit. */
void scsi_lu_set_prevent(struct scsi_cmd *cmd, bool prevent);
/* MODE SELECT: the caching page's WCE, and its default (see scsi_lu_wce). */
void scsi_lu_set_wce(struct scsi_lu *lu, bool wce);
bool scsi_lu_wce_default(const struct scsi_lu *lu);
/* MODE SELECT: the control page's SWP (SPC-4 §7.5.8): software write
 * protection, which scsi_lu_read_only includes. Off after a reset. */
void scsi_lu_set_swp(struct scsi_lu *lu, bool swp);
bool scsi_lu_swp(const struct scsi_lu *lu);
/* START STOP UNIT with LOEJ on a removable disk: whether the (virtual)
 * medium is loaded. Without it the core answers NOT READY / MEDIUM NOT
 * PRESENT to commands without SCSI_OP_NO_MEDIUM, as for a DVD. */
void scsi_lu_set_loaded(struct scsi_lu *lu, bool loaded);
bool scsi_lu_loaded(const struct scsi_lu *lu);
/* The opcode tables of @lu's type in lookup order, NULL-terminated (REPORT
 * SUPPORTED OPERATION CODES); @lu NULL: the tables of an absent LUN. */
const struct scsi_op *const *scsi_lu_op_tables(const struct scsi_lu *lu);

/* ---- nexuses and unit attentions ------------------------------------------ */

const struct scsi_initiator_id *scsi_nexus_id(const struct scsi_nexus *n);
/* The identity disk requests of @n carry (struct disk_io.initiator): a
 * 16-byte host id derived from the initiator port name, so the disk's
 * reservations (prwrap, a block device) tell nexuses apart. */
const struct disk_initiator *scsi_nexus_disk_initiator(const struct scsi_nexus *n);
/* The disk_initiator scsi_nexus_disk_initiator gives a nexus of initiator
 * port @port (its name when it has no port) of protocol @proto, whether
 * or not one exists: REGISTER AND MOVE names its destination by
 * TransportID. Returns 0. (lu.c) */
int scsi_port_disk_initiator(enum scsi_protocol proto, const char *port,
			     struct disk_initiator *out);

/* Queues unit attention @asc/@ascq on @lu for every nexus of its target
 * except @except (NULL: all). SAM-5 §5.14: reported once, to the next
 * command of each nexus (INQUIRY, REPORT LUNS and REQUEST SENSE excepted). */
void scsi_lu_ua_all(struct scsi_lu *lu, const struct scsi_nexus *except, uint8_t asc,
		    uint8_t ascq);
/* Queues it for the nexuses whose disk_initiator host id is @host_id
 * (@len bytes): the registrants a PREEMPT removed, say. */
void scsi_lu_ua_host(struct scsi_lu *lu, const uint8_t *host_id, size_t len, uint8_t asc,
		     uint8_t ascq);

/* ---- persistent reservations (pr.c) ---------------------------------------- */

struct scsi_pr;

/* The LU's PR front over @disk's PR calls (a disk without DISK_CAP_PR
 * gets a prwrap of its own): TransportIDs of registrants, APTPL state in
 * @state_path (NULL: APTPL refused), restored here when the file exists.
 * Returns 0 or -errno with a message. */
int scsi_pr_new(struct scsi_lu *lu, struct disk *disk, const char *state_path,
		struct scsi_pr **out, char *err, size_t errlen);
void scsi_pr_free(struct scsi_pr *pr);
/* The disk commands go to: @disk itself, or the prwrap over it. */
struct disk *scsi_pr_disk(const struct scsi_pr *pr);
/* PERSISTENT RESERVE IN (5Eh) and OUT (5Fh). */
void scsi_pr_in(struct scsi_pr *pr, struct scsi_cmd *cmd);
void scsi_pr_out(struct scsi_pr *pr, struct scsi_cmd *cmd);
/* Whether a command other than data I/O (which the disk itself checks)
 * conflicts with the persistent reservation for @n (SPC-4 §5.13.1 table
 * 42: MODE SELECT, START STOP UNIT, ...). Synchronous, cheap. */
bool scsi_pr_conflicts(struct scsi_pr *pr, const struct scsi_nexus *n, const uint8_t *cdb);

/* ---- DVD (dvd.c) ------------------------------------------------------------- */

struct scsi_dvd;

int scsi_dvd_new(struct scsi_lu *lu, struct disk *medium, struct scsi_dvd **out, char *err,
		 size_t errlen);
void scsi_dvd_free(struct scsi_dvd *dvd);
/* Whether a medium is loaded (commands without SCSI_OP_NO_MEDIUM then
 * get NOT READY / MEDIUM NOT PRESENT from the core). */
bool scsi_dvd_has_medium(const struct scsi_dvd *dvd);
/* The medium with a new reference for a command's I/O (NULL: none). */
struct disk *scsi_dvd_medium(struct scsi_dvd *dvd);
/* scsi_lu_change_media for a DVD (the core has checked the PREVENT
 * state already): loads @disk (NULL: removes the medium) and queues the
 * media events and unit attentions. */
int scsi_dvd_change_media(struct scsi_dvd *dvd, struct disk *disk);
/* A host-initiated change that the guest's PREVENT refused (the core's
 * scsi_lu_change_media, -EBUSY without force): queues the EJECT REQUEST
 * media event (MMC-6 §6.6.2.5), the eject button of a real drive, so the
 * guest can unmount and allow removal. Any thread. */
void scsi_dvd_eject_request(struct scsi_dvd *dvd);

#endif
