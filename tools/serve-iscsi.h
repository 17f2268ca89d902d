/* SPDX-License-Identifier: MIT */
/*
 * serve-iscsi.h: the iSCSI half of `diskstack serve` (docs/iscsi.md): its
 * options, targets and LUNs from specs, CHAP credentials, and the
 * listener on the shared socket engine. cmd-serve.c calls these in the
 * order they are declared.
 */
#ifndef DISKSTACK_TOOLS_SERVE_ISCSI_H
#define DISKSTACK_TOOLS_SERVE_ISCSI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/serve-net.h"

struct disk;
struct netsrv;
struct spec;

#define SERVE_ISCSI_MAX_LUNS 1024

/* Option codes (getopt_long values above 512, beside cmd-serve's). */
enum {
	SERVE_ISCSI_OPT_LISTEN = 512,
	SERVE_ISCSI_OPT_TARGET,
	SERVE_ISCSI_OPT_LUN,
	SERVE_ISCSI_OPT_PORTAL,
	SERVE_ISCSI_OPT_CHAP_USER,
	SERVE_ISCSI_OPT_CHAP_SECRET,
	SERVE_ISCSI_OPT_CHAP_SECRET_FILE,
	SERVE_ISCSI_OPT_CHAP_TUSER,
	SERVE_ISCSI_OPT_CHAP_TSECRET,
	SERVE_ISCSI_OPT_CHAP_TSECRET_FILE,
	SERVE_ISCSI_OPT_LAST,
};

/* The long options (NULL-terminated is the caller's: these are spliced
 * into cmd-serve's table). */
#define SERVE_ISCSI_LONGOPTS \
	{ "iscsi",                    required_argument, NULL, SERVE_ISCSI_OPT_LISTEN }, \
	{ "target",                   required_argument, NULL, SERVE_ISCSI_OPT_TARGET }, \
	{ "lun",                      required_argument, NULL, SERVE_ISCSI_OPT_LUN }, \
	{ "iscsi-portal",             required_argument, NULL, SERVE_ISCSI_OPT_PORTAL }, \
	{ "chap-user",                required_argument, NULL, SERVE_ISCSI_OPT_CHAP_USER }, \
	{ "chap-secret",              required_argument, NULL, SERVE_ISCSI_OPT_CHAP_SECRET }, \
	{ "chap-secret-file",         required_argument, NULL, SERVE_ISCSI_OPT_CHAP_SECRET_FILE }, \
	{ "chap-target-user",         required_argument, NULL, SERVE_ISCSI_OPT_CHAP_TUSER }, \
	{ "chap-target-secret",       required_argument, NULL, SERVE_ISCSI_OPT_CHAP_TSECRET }, \
	{ "chap-target-secret-file",  required_argument, NULL, SERVE_ISCSI_OPT_CHAP_TSECRET_FILE }

/* The help text of the options. */
#define SERVE_ISCSI_USAGE \
	"iSCSI (RFC 7143; docs/iscsi.md):\n" \
	"      --iscsi [ADDR:]PORT  serve iSCSI on TCP PORT (3260 is the standard port; an\n" \
	"                           ADDR alone means 3260); NBD then runs only if an NBD\n" \
	"                           listener (-p, -i, -U, -s) or --export is given too\n" \
	"      --target IQN         a target; the --lun options after it are its LUNs\n" \
	"      --lun N=SPEC         LUN N (0-255) of the last --target (of the default\n" \
	"                           target before any --target); repeatable\n" \
	"                           (SPEC,dvd makes a read-only DVD LUN)\n" \
	"                           SPEC (positional) is LUN 0 of the default target\n" \
	"                           iqn.2026-12.org.diskstack:<host name>\n" \
	"      --iscsi-portal ADDR:PORT  the portal SendTargets advertises (behind NAT)\n" \
	"      --chap-user NAME --chap-secret S | --chap-secret-file F\n" \
	"                           initiators must log in with CHAP as NAME\n" \
	"      --chap-target-user NAME --chap-target-secret S | --chap-target-secret-file F\n" \
	"                           mutual CHAP: what the target answers when challenged\n" \
	"\n"

struct serve_iscsi_lun {
	unsigned target;                /* index into targets[] */
	unsigned lun;
	const char *spec_text;          /* borrowed from argv */
	struct spec *spec;              /* owned */
};

struct serve_iscsi {
	const char *listen;             /* --iscsi argument, NULL = iSCSI off */
	const char *portal;
	const char *chap_user, *chap_tuser;
	char *chap_secret, *chap_tsecret;   /* owned copies */
	const char *targets[SERVE_ISCSI_MAX_LUNS];  /* [0] is the default target */
	char default_name[256];
	unsigned ntargets;
	struct serve_iscsi_lun luns[SERVE_ISCSI_MAX_LUNS];
	unsigned nluns;
	struct iscsisrv *srv;
	struct serve_disks disks;       /* flushed at the end; owner: the scsi_target, id: the LUN */
	struct scsi_target *built[SERVE_ISCSI_MAX_LUNS];  /* per targets[]; NULL: none */
	/* The names of targets added at run time (scsi_target_new borrows
	 * its name; a removed target lives until the server is freed). */
	char **added_names;
	unsigned nadded_names;
	uint16_t bound_port;
};

/* Whether @opt is one of ours. */
static inline bool serve_iscsi_is_opt(int opt)
{
	return opt >= SERVE_ISCSI_OPT_LISTEN && opt < SERVE_ISCSI_OPT_LAST;
}

/* Takes one option. Returns 0 or an exit code (usage error printed). */
int serve_iscsi_opt(struct serve_iscsi *si, const char *cmd, int opt, const char *arg);
/* Checks the options and parses the LUN specs; @have_default: a
 * positional SPEC exists (LUN 0 of the default target). Returns 0 or an
 * exit code. */
int serve_iscsi_check(struct serve_iscsi *si, const char *cmd, bool have_default);
/* Opens the LUN disks and builds the targets; @default_disk (borrowed,
 * NULL when none), opened from @default_spec, becomes LUN 0 of the
 * default target. A LUN whose spec ends in ",dvd" is a DVD, in
 * ",removable" a removable disk. Returns 0 or an exit code. On the thread
 * with the reactor. */
int serve_iscsi_open(struct serve_iscsi *si, const char *cmd, struct disk *default_disk,
		     const char *default_spec, bool read_only);
/* Listens on the --iscsi address on @net. Returns 0 or an exit code. */
int serve_iscsi_listen(struct serve_iscsi *si, const char *cmd, struct netsrv *net);
/* Flushes every LUN's disk (after netsrv_run). Returns 0 or 1. */
int serve_iscsi_flush(struct serve_iscsi *si);
/* Frees everything (after netsrv_free). */
void serve_iscsi_free(struct serve_iscsi *si);

/* For the control socket (serve-ctl-fe.c), on its thread: the target
 * named @name (NULL: the default one), or NULL. */
struct scsi_target *serve_iscsi_target(struct serve_iscsi *si, const char *name);

/* Whether @name is a valid iSCSI name for a target (iqn., eui., naa.). */
bool serve_iscsi_valid_name(const char *name);

/* On the control thread: a copy of @name kept until serve_iscsi_free,
 * for scsi_target_new; NULL when out of memory. */
const char *serve_iscsi_keep_name(struct serve_iscsi *si, const char *name);

/* On the control thread: serves target @t, built with its LUs (@disks[i]
 * borrowed, opened from @specs[i], for LUN @luns[i]), from now on (new
 * logins find it). Takes @t over, also on failure. Returns 0, -EEXIST
 * (the name is served), -ENOSPC (too many targets) or -ENOMEM. */
int serve_iscsi_target_add(struct serve_iscsi *si, struct scsi_target *t, unsigned n,
			   const unsigned *luns, struct disk *const *disks,
			   const char *const *specs);

/* On the control thread: hides target @name from new logins and drains
 * (@force: closes) its sessions (iscsisrv_remove_target), waits up to
 * @timeout_ms for them to go, then removes its LUs and flushes their
 * disks. *@nsessions: the sessions it had (or still has, on -ETIMEDOUT).
 * Returns 0, -ENOENT, -ETIMEDOUT (sessions remain: it stays hidden; call
 * again), -EIO (a flush failed; it is gone anyway) or -ENOMEM. */
int serve_iscsi_target_remove(struct serve_iscsi *si, const char *name, bool force,
			      unsigned timeout_ms, unsigned *nsessions);

#endif
