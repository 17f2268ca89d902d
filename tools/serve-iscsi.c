/* SPDX-License-Identifier: MIT */
/*
 * serve-iscsi.c: the iSCSI half of `diskstack serve` (serve-iscsi.h):
 * targets and LUNs from specs, CHAP credentials from options or files,
 * and the iSCSI listener next to (or instead of) NBD on the same engine.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reactor.h"
#include "iscsi/login.h"
#include "iscsi/server.h"
#include "net/netsrv.h"
#include "scsi/scsi.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/scsi-lun.h"
#include "tools/serve-iscsi.h"
#include "tools/serve-net.h"
#include "tools/tool.h"

/* Reads a secret from the first line of @path (keeps it out of ps). */
static int read_secret_file(const char *cmd, const char *path, char **out)
{
	char buf[512];
	FILE *fp = fopen(path, "r");
	size_t n;

	if (!fp)
		return tool_usage_error(cmd, "cannot open '%s': %s", path, strerror(errno));
	if (!fgets(buf, sizeof(buf), fp)) {
		fclose(fp);
		return tool_usage_error(cmd, "'%s' holds no secret", path);
	}
	fclose(fp);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	if (n == 0)
		return tool_usage_error(cmd, "'%s' holds an empty secret", path);
	free(*out);
	*out = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return *out ? 0 : tool_error(cmd, "out of memory");
}

/* iSCSI names (RFC 3722 stringprep, simplified): lower-case letters,
 * digits, '-', '.', ':'. */
static bool valid_iqn(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > ISCSI_NAME_MAX)
		return false;
	if (strncmp(s, "iqn.", 4) != 0 && strncmp(s, "eui.", 4) != 0 && strncmp(s, "naa.", 4) != 0)
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("-.:", *s)))
			return false;
	return true;
}

int serve_iscsi_opt(struct serve_iscsi *si, const char *cmd, int opt, const char *arg)
{
	switch (opt) {
	case SERVE_ISCSI_OPT_LISTEN:
		si->listen = arg;
		return 0;
	case SERVE_ISCSI_OPT_TARGET:
		if (!valid_iqn(arg))
			return tool_usage_error(cmd, "--target wants an iSCSI name (iqn.YYYY-MM.domain:name, "
						"lower case), got '%s'", arg);
		if (si->ntargets == 0)
			si->ntargets = 1;       /* [0]: the default target */
		if (si->ntargets == SERVE_ISCSI_MAX_LUNS)
			return tool_usage_error(cmd, "too many targets");
		for (unsigned i = 1; i < si->ntargets; i++)
			if (strcmp(si->targets[i], arg) == 0)
				return tool_usage_error(cmd, "target '%s' given twice", arg);
		si->targets[si->ntargets++] = arg;
		return 0;
	case SERVE_ISCSI_OPT_LUN: {
		const char *spec_text;
		unsigned lun;
		struct serve_iscsi_lun *l;
		int ret = tool_lun_arg(cmd, arg, &lun, &spec_text);

		if (ret)
			return ret;
		if (si->nluns == SERVE_ISCSI_MAX_LUNS)
			return tool_usage_error(cmd, "too many LUNs");
		if (si->ntargets == 0)
			si->ntargets = 1;
		l = &si->luns[si->nluns++];
		l->target = si->ntargets > 1 ? si->ntargets - 1 : 0;
		l->lun = lun;
		l->spec_text = spec_text;
		return 0;
	}
	case SERVE_ISCSI_OPT_PORTAL:
		si->portal = arg;
		return 0;
	case SERVE_ISCSI_OPT_CHAP_USER:
		si->chap_user = arg;
		return 0;
	case SERVE_ISCSI_OPT_CHAP_TUSER:
		si->chap_tuser = arg;
		return 0;
	case SERVE_ISCSI_OPT_CHAP_SECRET:
	case SERVE_ISCSI_OPT_CHAP_TSECRET: {
		char **dst = opt == SERVE_ISCSI_OPT_CHAP_SECRET ? &si->chap_secret : &si->chap_tsecret;

		free(*dst);
		*dst = strdup(arg);
		return *dst ? 0 : tool_error(cmd, "out of memory");
	}
	case SERVE_ISCSI_OPT_CHAP_SECRET_FILE:
		return read_secret_file(cmd, arg, &si->chap_secret);
	case SERVE_ISCSI_OPT_CHAP_TSECRET_FILE:
		return read_secret_file(cmd, arg, &si->chap_tsecret);
	}
	return tool_usage_error(cmd, "unknown iSCSI option");
}

int serve_iscsi_check(struct serve_iscsi *si, const char *cmd, bool have_default)
{
	int ret;

	if (!si->listen) {
		if (si->ntargets || si->nluns || si->chap_user || si->chap_secret || si->chap_tuser ||
		    si->chap_tsecret || si->portal)
			return tool_usage_error(cmd, "--target, --lun, --chap-* and --iscsi-portal "
						"need --iscsi");
		return 0;
	}
	if (!si->chap_user != !si->chap_secret)
		return tool_usage_error(cmd, "--chap-user and --chap-secret(-file) go together");
	if (!si->chap_tuser != !si->chap_tsecret)
		return tool_usage_error(cmd, "--chap-target-user and --chap-target-secret(-file) "
					"go together");
	if (si->chap_tuser && !si->chap_user)
		return tool_usage_error(cmd, "mutual CHAP (--chap-target-user) needs --chap-user");
	if (si->ntargets == 0)
		si->ntargets = 1;
	serve_default_name("iqn.2026-12.org.diskstack:", si->default_name,
			   sizeof(si->default_name));
	si->targets[0] = si->default_name;
	for (unsigned t = 1; t < si->ntargets; t++) {
		bool any = false;

		for (unsigned i = 0; i < si->nluns; i++)
			any |= si->luns[i].target == t;
		if (!any)
			return tool_usage_error(cmd, "target '%s' has no --lun", si->targets[t]);
	}
	for (unsigned i = 0; i < si->nluns; i++) {
		if (have_default && si->luns[i].target == 0 && si->luns[i].lun == 0)
			return tool_usage_error(cmd, "LUN 0 of the default target is SPEC already");
		for (unsigned j = 0; j < i; j++)
			if (si->luns[j].target == si->luns[i].target && si->luns[j].lun == si->luns[i].lun)
				return tool_usage_error(cmd, "LUN %u of '%s' given twice",
							si->luns[i].lun, si->targets[si->luns[i].target]);
		ret = tool_parse_spec(cmd, "--lun SPEC", si->luns[i].spec_text, &si->luns[i].spec);
		if (ret)
			return ret;
	}
	if (!have_default) {
		bool any = false;

		for (unsigned i = 0; i < si->nluns; i++)
			any |= si->luns[i].target == 0;
		if (!any && si->ntargets == 1)
			return tool_usage_error(cmd, "nothing to serve over iSCSI: give a SPEC or "
						"--lun N=SPEC");
	}
	return 0;
}

struct scsi_target *serve_iscsi_target(struct serve_iscsi *si, const char *name)
{
	for (unsigned i = 0; i < si->ntargets; i++)
		if (si->built[i] && (name ? strcmp(si->targets[i], name) == 0 : i == 0))
			return si->built[i];
	return NULL;
}

bool serve_iscsi_valid_name(const char *name)
{
	return valid_iqn(name);
}

const char *serve_iscsi_keep_name(struct serve_iscsi *si, const char *name)
{
	char **v = realloc(si->added_names, (si->nadded_names + 1) * sizeof(*v));

	if (!v)
		return NULL;
	si->added_names = v;
	if (!(v[si->nadded_names] = strdup(name)))
		return NULL;
	return v[si->nadded_names++];
}

int serve_iscsi_target_add(struct serve_iscsi *si, struct scsi_target *t, unsigned n,
			   const unsigned *luns, struct disk *const *disks,
			   const char *const *specs)
{
	unsigned slot;
	int ret;

	/* A slot in targets[]/built[]: one a removed target left, else a new one. */
	for (slot = 1; slot < si->ntargets && si->built[slot]; slot++)
		;
	if (slot == SERVE_ISCSI_MAX_LUNS) {
		scsi_target_free(t);
		return -ENOSPC;
	}
	ret = iscsisrv_add_target(si->srv, t);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < n; i++)
		if ((ret = serve_disks_add(&si->disks, disks[i], t, luns[i], specs[i])) < 0) {
			unsigned left;

			(void)serve_iscsi_target_remove(si, scsi_target_name(t), true, 0, &left);
			return ret;
		}
	/* The target's name lives as long as the server (a removed one is
	 * retired, not freed). */
	si->targets[slot] = scsi_target_name(t);
	si->built[slot] = t;
	if (slot == si->ntargets)
		si->ntargets++;
	return 0;
}

int serve_iscsi_target_remove(struct serve_iscsi *si, const char *name, bool force,
			      unsigned timeout_ms, unsigned *nsessions)
{
	uint64_t deadline = reactor_now_ns() + (uint64_t)timeout_ms * 1000000u;
	bool live = serve_iscsi_target(si, name) != NULL, units = false;
	struct scsi_target *t = NULL;
	int ret, status = 0;

	ret = iscsisrv_remove_target(si->srv, name, force, &t, nsessions);
	if (!t)
		return ret;     /* -ENOENT, or -ENOMEM with nothing changed */
	for (unsigned i = 0; i < si->disks.n; i++)
		units |= si->disks.v[i].owner == t;
	if (!live && !units && iscsisrv_target_sessions(si->srv, t) == 0)
		return -ENOENT;         /* removed before, completely */
	for (unsigned i = 0; i < si->ntargets; i++)
		if (si->built[i] == t)
			si->built[i] = NULL;   /* hidden from the control socket too */
	/* The sessions leave on their workers; this thread has nothing else
	 * to do meanwhile (the control thread, never a worker). */
	while (iscsisrv_target_sessions(si->srv, t) > 0) {
		if (reactor_now_ns() >= deadline) {
			*nsessions = iscsisrv_target_sessions(si->srv, t);
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
	if (ret < 0)
		return ret;
	/* No session is left, so no command runs on its LUs. */
	for (unsigned i = si->disks.n; i-- > 0;) {
		unsigned lun;

		if (i >= si->disks.n || si->disks.v[i].owner != t)
			continue;
		lun = si->disks.v[i].id;
		(void)scsi_target_remove_lu(t, lun);
		if (serve_disks_drop(&si->disks, t, lun, "iscsi") == -EIO)
			status = -EIO;
	}
	return status;
}

/* Makes LUN @lun of @t over @d, opened from @spec_text (scsi-lun.h). */
static int add_lu(struct serve_iscsi *si, const char *cmd, struct scsi_target *t, unsigned lun,
		  struct disk *d, const char *spec_text)
{
	int ret = tool_scsi_add_lu(cmd, t, lun, d, spec_text);

	return ret ? ret : serve_disks_keep(&si->disks, cmd, d, t, lun, spec_text);
}

int serve_iscsi_open(struct serve_iscsi *si, const char *cmd, struct disk *default_disk,
		     const char *default_spec, bool read_only)
{
	struct iscsisrv_opts o = {
		.chap_user = si->chap_user, .chap_secret = si->chap_secret,
		.chap_target_user = si->chap_tuser, .chap_target_secret = si->chap_tsecret,
		.portal = si->portal,
	};
	int ret;

	if (!si->listen)
		return 0;
	ret = iscsisrv_new(&o, &si->srv);
	if (ret < 0)
		return tool_error(cmd, "cannot create the iSCSI server: %s", strerror(-ret));
	for (unsigned t = 0; t < si->ntargets; t++) {
		struct scsi_target *st = NULL;
		bool any = t == 0 && default_disk;

		for (unsigned i = 0; i < si->nluns; i++)
			any |= si->luns[i].target == t;
		if (!any)
			continue;
		ret = scsi_target_new(si->targets[t], &st);
		if (ret < 0)
			return tool_error(cmd, "target '%s': %s", si->targets[t], strerror(-ret));
		if (t == 0 && default_disk &&
		    (ret = add_lu(si, cmd, st, 0, default_disk, default_spec)) != 0) {
			scsi_target_free(st);
			return ret;
		}
		for (unsigned i = 0; i < si->nluns; i++) {
			struct disk *d = NULL;

			if (si->luns[i].target != t)
				continue;
			ret = tool_open_spec(cmd, "--lun SPEC", si->luns[i].spec, read_only, &d);
			if (ret == 0) {
				ret = add_lu(si, cmd, st, si->luns[i].lun, d,
					     si->luns[i].spec_text);
				disk_unref(d);
			}
			if (ret) {
				scsi_target_free(st);
				return ret;
			}
		}
		ret = iscsisrv_add_target(si->srv, st);
		if (ret < 0)
			return tool_error(cmd, "target '%s': %s", si->targets[t], strerror(-ret));
		si->built[t] = st;   /* owned by the server */
		log_info("serve: iSCSI target %s", si->targets[t]);
	}
	return 0;
}

int serve_iscsi_listen(struct serve_iscsi *si, const char *cmd, struct netsrv *net)
{
	const struct netsrv_proto *proto;

	if (!si->listen)
		return 0;
	if (iscsisrv_protocol(si->srv, &proto) < 0)
		return tool_error(cmd, "no iSCSI target to serve");
	return serve_listen_tcp(cmd, net, proto, "iSCSI", "--iscsi", si->listen,
				ISCSI_DEFAULT_PORT, &si->bound_port);
}

int serve_iscsi_flush(struct serve_iscsi *si)
{
	return serve_disks_flush(&si->disks, "iscsi");
}

void serve_iscsi_free(struct serve_iscsi *si)
{
	iscsisrv_free(si->srv);
	si->srv = NULL;
	serve_disks_free(&si->disks);
	memset(si->built, 0, sizeof(si->built));
	for (unsigned i = 0; i < si->nadded_names; i++)
		free(si->added_names[i]);
	free(si->added_names);
	si->added_names = NULL;
	si->nadded_names = 0;
	for (unsigned i = 0; i < si->nluns; i++)
		spec_free(si->luns[i].spec);
	si->nluns = 0;
	if (si->chap_secret)
		explicit_bzero(si->chap_secret, strlen(si->chap_secret));
	if (si->chap_tsecret)
		explicit_bzero(si->chap_tsecret, strlen(si->chap_tsecret));
	free(si->chap_secret);
	free(si->chap_tsecret);
	si->chap_secret = si->chap_tsecret = NULL;
}
