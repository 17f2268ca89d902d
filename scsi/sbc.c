/* PLACEHOLDER: replaced by branch scsi-sbc */
/* SPDX-License-Identifier: MIT */
/*
 * sbc.c (placeholder): only what the linker needs until branch scsi-sbc
 * brings the SBC-3 commands of a disk. No command is listed, so a disk LU
 * answers INVALID COMMAND OPERATION CODE to READ, WRITE and the rest.
 */
#include "config.h"

#include <stdlib.h>

#include "scsi/internal.h"

const struct scsi_op scsi_sbc_ops[] = {
	{ .run = NULL },
};

int scsi_sbc_lu_init(struct scsi_lu *lu, struct scsi_sbc **out)
{
	(void)lu;
	*out = NULL;
	return 0;
}

void scsi_sbc_lu_fini(struct scsi_sbc *sbc)
{
	(void)sbc;
}
