/* SPDX-License-Identifier: MIT */
/*
 * scsi-lun.h: `--lun N=SPEC` for the commands that serve SCSI logical
 * units (serve --iscsi, vhost-user-scsi): the option's syntax, and an LU
 * of the SCSI core made from an opened spec (docs/specs.md: ",dvd",
 * ",removable").
 */
#ifndef DISKSTACK_TOOLS_SCSI_LUN_H
#define DISKSTACK_TOOLS_SCSI_LUN_H

#include <stddef.h>

struct disk;
struct scsi_target;

/* Splits @arg, "N=SPEC" with N in 0-255, into *@lun and *@spec_text (a
 * pointer into @arg). Returns 0 or an exit code (usage error printed). */
int tool_lun_arg(const char *cmd, const char *arg, unsigned *lun, const char **spec_text);

/*
 * Makes LUN @lun of @t over @d (borrowed; the LU takes a reference),
 * opened from @spec_text: ",dvd" makes a DVD, ",removable" a removable
 * disk, and a writable disk whose data persists in a file keeps its
 * persistent reservations (APTPL) in "<file>.scsi-pr" next to it
 * (docs/scsi-pr.md). Returns 0 or an exit code (error printed).
 */
int tool_scsi_add_lu(const char *cmd, struct scsi_target *t, unsigned lun, struct disk *d,
		     const char *spec_text);
/* The same without printing: returns 0 or -errno (-EEXIST: the LUN is
 * taken) with a message in @err. Also while nexuses run (hot-add). */
int tool_scsi_make_lu(struct scsi_target *t, unsigned lun, struct disk *d, const char *spec_text,
		      char *err, size_t errlen);

#endif
