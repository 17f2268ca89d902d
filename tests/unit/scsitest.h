/* SPDX-License-Identifier: MIT */
/*
 * scsitest.h: helpers for unit tests of the SCSI core (scsi/): a target
 * over disks opened from specs, nexuses, and a CDB run synchronously on
 * the calling thread's reactor with its status, sense and data. Every
 * helper fails the running cmocka test on a set-up error.
 */
#ifndef DISKSTACK_TESTS_SCSITEST_H
#define DISKSTACK_TESTS_SCSITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scsi/scsi.h"

/* What a command ended with. */
struct st_result {
	uint8_t status;                 /* enum scsi_status */
	uint8_t key, asc, ascq;         /* parsed from the sense (0 without) */
	uint8_t sense[SCSI_SENSE_MAX];
	uint8_t sense_len;
	uint32_t data_len;              /* data-in bytes written */
	uint64_t want_len;              /* what the CDB asked to move */
};

/* A new target; @name NULL: "iqn.2024-01.org.example:test". Free it with
 * scsi_target_free after freeing its nexuses. */
struct scsi_target *st_target(const char *name);
/* Opens @spec (the storage grammar, ",ro" allowed) and adds it to @t as
 * LUN @lun with @o (NULL: a disk LU with default identity). Returns the
 * LU (owned by the target). */
struct scsi_lu *st_add_lu(struct scsi_target *t, unsigned lun, const char *spec,
			  const struct scsi_lu_opts *o);
/* Same over an open disk @d (the LU takes its own reference). */
struct scsi_lu *st_add_disk(struct scsi_target *t, unsigned lun, struct disk *d,
			    const struct scsi_lu_opts *o);
/* An iSCSI I_T nexus for initiator @name with ISID @isid (port name
 * "<name>,i,0x<isid>"). Free it with scsi_nexus_free. */
struct scsi_nexus *st_nexus(struct scsi_target *t, const char *name, uint64_t isid);

/*
 * Runs @cdb (@cdb_len bytes) from @n on LUN @lun and waits for it. @buf of
 * @len bytes is the data-in room (SCSI_DIR_IN) or the data-out bytes
 * (SCSI_DIR_OUT); NULL/0 for none. Checks that done() runs exactly once
 * and never inside scsi_cmd_submit. Fills @res (may be NULL) and returns
 * the status.
 */
uint8_t st_run(struct scsi_nexus *n, unsigned lun, const uint8_t *cdb, size_t cdb_len,
	       enum scsi_data_dir dir, void *buf, size_t len, struct st_result *res);
/* Same with a LUN as on the wire (well-known LUNs, bad encodings). */
uint8_t st_run_wire(struct scsi_nexus *n, uint64_t wire_lun, const uint8_t *cdb,
		    size_t cdb_len, enum scsi_data_dir dir, void *buf, size_t len,
		    struct st_result *res);
/* Sends TEST UNIT READY until it no longer reports a unit attention
 * (what initiators do after login). Returns how many it took away. */
unsigned st_clear_ua(struct scsi_nexus *n, unsigned lun);

/* The fixture of the SBC and SPC tests: a target with LUN 0 on a disk
 * spec, and one nexus (host1, ISID 1) whose unit attentions are cleared. */
struct st_fix {
	struct scsi_target *t;
	struct scsi_nexus *n;
};

/* Fills @f (borrowed) with a new target and nexus, LUN 0 on @spec0. */
void st_fix_init(struct st_fix *f, const char *spec0);
/* cmocka teardown for a *@state that is a struct st_fix. */
int st_fix_teardown(void **state);

/* Asserts @res is CHECK CONDITION with sense @key/@asc/@ascq. */
#define st_assert_sense(res, k, a, q) \
	st_assert_sense_at((res), (k), (a), (q), __FILE__, __LINE__)
void st_assert_sense_at(const struct st_result *res, uint8_t key, uint8_t asc, uint8_t ascq,
			const char *file, int line);

#endif
