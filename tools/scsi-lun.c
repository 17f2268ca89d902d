/* SPDX-License-Identifier: MIT */
/*
 * scsi-lun.c: `--lun N=SPEC` and LUs from specs (scsi-lun.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "scsi/scsi.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/scsi-lun.h"
#include "tools/tool.h"

int tool_lun_arg(const char *cmd, const char *arg, unsigned *lun, const char **spec_text)
{
	const char *eq = strchr(arg, '=');
	char num[16];
	uint64_t v;

	if (!eq || (size_t)(eq - arg) >= sizeof(num))
		return tool_usage_error(cmd, "--lun wants N=SPEC, got '%s'", arg);
	memcpy(num, arg, (size_t)(eq - arg));
	num[eq - arg] = '\0';
	if (tool_parse_uint(num, 0, 255, &v) < 0)
		return tool_usage_error(cmd, "bad LUN '%s' (0-255)", num);
	*lun = (unsigned)v;
	*spec_text = eq + 1;
	return 0;
}

int tool_scsi_make_lu(struct scsi_target *t, unsigned lun, struct disk *d, const char *spec_text,
		      char *err, size_t errlen)
{
	struct scsi_lu_opts lo = {
		.type = spec_is_dvd(spec_text) ? SCSI_LU_DVD : SCSI_LU_DISK,
		.removable = spec_is_removable(spec_text),
	};
	char state[PATH_MAX];
	struct scsi_lu *lu = NULL;
	int ret;

	if (lo.type == SCSI_LU_DISK && !disk_get_info(d)->read_only &&
	    (disk_get_info(d)->caps & DISK_CAP_PERSISTENT) &&
	    spec_write_path(spec_text, state, sizeof(state) - 10) == 0) {
		strcat(state, ".scsi-pr");
		lo.pr_state_path = state;
	}
	if (errlen)
		err[0] = '\0';
	ret = scsi_lu_new(d, &lo, &lu, err, errlen);
	if (ret < 0)
		return ret;
	ret = scsi_target_add_lu(t, lun, lu);
	if (ret < 0 && errlen)
		snprintf(err, errlen, "%s", ret == -EEXIST ? "the LUN is taken" : strerror(-ret));
	return ret;
}

int tool_scsi_add_lu(const char *cmd, struct scsi_target *t, unsigned lun, struct disk *d,
		     const char *spec_text)
{
	char err[256] = "";
	int ret = tool_scsi_make_lu(t, lun, d, spec_text, err, sizeof(err));

	if (ret < 0)
		return tool_error(cmd, "LUN %u of '%s': %s", lun, scsi_target_name(t),
				  err[0] ? err : strerror(-ret));
	return 0;
}
