/* SPDX-License-Identifier: MIT */
/*
 * serve-ctl.h: `diskstack serve --control PATH`: the methods of the
 * control socket (docs/ctl.md) over serve's NBD server, on the JSON-RPC
 * server of ctl/.
 */
#ifndef DISKSTACK_TOOLS_SERVE_CTL_H
#define DISKSTACK_TOOLS_SERVE_CTL_H

#include <stdbool.h>
#include <stdint.h>

struct nbdsrv;
struct netsrv;
struct serve_ctl;
struct serve_iscsi;
struct serve_nvmf;
struct serve_vhost;

/* What the methods work on (all borrowed until serve_ctl_free). */
struct serve_ctl_opts {
	const char *path;           /* the socket */
	struct nbdsrv *nbd;
	struct netsrv *net;
	bool read_only;             /* serve -r: export-add inherits it */
	unsigned threads;
	/* The other frontends (serve-ctl-fe.c); NULL or not listening: off. */
	struct serve_iscsi *iscsi;
	struct serve_nvmf *nvmf;
	struct serve_vhost *vhost;
};

/* Binds the control socket. Returns 0, or an exit status after printing
 * a message (2: another server owns the path; 1: anything else). */
int serve_ctl_new(const struct serve_ctl_opts *o, struct serve_ctl **out);
/* Records the spec text of an export given on the command line, for
 * export-list (@spec is redacted of URL credentials here). */
void serve_ctl_note_export(struct serve_ctl *c, const char *name, const char *spec);
/* Starts the control thread. Returns 0 or 1 after printing a message. */
int serve_ctl_start(struct serve_ctl *c);
/* Stops the control thread and cancels and ends the running jobs
 * (layer-commit), before the exports are flushed. */
void serve_ctl_stop(struct serve_ctl *c);
/* Stops and frees; removes the socket file. NULL allowed. */
void serve_ctl_free(struct serve_ctl *c);

#endif
