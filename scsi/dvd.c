/* PLACEHOLDER: replaced by branch scsi-dvd */
/* SPDX-License-Identifier: MIT */
/*
 * dvd.c (placeholder): only what the linker needs until branch scsi-dvd
 * brings the MMC-6 DVD. A DVD LU cannot be made yet.
 */
#include "config.h"

#include <errno.h>

#include "common/log.h"
#include "scsi/internal.h"

const struct scsi_op scsi_mmc_ops[] = {
	{ .run = NULL },
};

int scsi_dvd_new(struct scsi_lu *lu, struct disk *medium, struct scsi_dvd **out, char *err,
		 size_t errlen)
{
	(void)lu;
	(void)medium;
	*out = NULL;
	return errbuf_fail(err, errlen, -ENOTSUP, "DVD logical units are not built yet");
}

void scsi_dvd_free(struct scsi_dvd *dvd)
{
	(void)dvd;
}

bool scsi_dvd_has_medium(const struct scsi_dvd *dvd)
{
	(void)dvd;
	return false;
}

struct disk *scsi_dvd_medium(struct scsi_dvd *dvd)
{
	(void)dvd;
	return NULL;
}

int scsi_dvd_change_media(struct scsi_dvd *dvd, struct disk *disk)
{
	(void)dvd;
	(void)disk;
	return -ENOTSUP;
}
