/* PLACEHOLDER: replaced by branch scsi-pr */
/* SPDX-License-Identifier: MIT */
/*
 * pr.c (placeholder): only what the linker needs until branch scsi-pr
 * brings PERSISTENT RESERVE IN/OUT. The front holds the disk and sends
 * commands straight to it; PR IN/OUT answer INVALID COMMAND OPERATION
 * CODE.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "scsi/internal.h"

struct scsi_pr {
	struct disk *disk;
};

int scsi_pr_new(struct scsi_lu *lu, struct disk *disk, const char *state_path,
		struct scsi_pr **out, char *err, size_t errlen)
{
	struct scsi_pr *pr = calloc(1, sizeof(*pr));

	(void)lu;
	(void)state_path;
	(void)err;
	(void)errlen;
	if (!pr)
		return -ENOMEM;
	pr->disk = disk_ref(disk);
	*out = pr;
	return 0;
}

void scsi_pr_free(struct scsi_pr *pr)
{
	if (!pr)
		return;
	disk_unref(pr->disk);
	free(pr);
}

struct disk *scsi_pr_disk(const struct scsi_pr *pr)
{
	return pr->disk;
}

void scsi_pr_in(struct scsi_pr *pr, struct scsi_cmd *cmd)
{
	(void)pr;
	scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	scsi_cmd_finish(cmd);
}

void scsi_pr_out(struct scsi_pr *pr, struct scsi_cmd *cmd)
{
	(void)pr;
	scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	scsi_cmd_finish(cmd);
}

bool scsi_pr_conflicts(struct scsi_pr *pr, const struct scsi_nexus *n, const uint8_t *cdb)
{
	(void)pr;
	(void)n;
	(void)cdb;
	return false;
}
