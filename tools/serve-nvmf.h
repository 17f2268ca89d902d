/* SPDX-License-Identifier: MIT */
/*
 * serve-nvmf.h: the NVMe/TCP half of `diskstack serve` (docs/nvme.md, "The
 * NVMe/TCP target"): its options, the subsystem and its namespaces from
 * specs, and the listener on the shared socket engine. cmd-serve.c calls
 * these in the order they are declared.
 */
#ifndef DISKSTACK_TOOLS_SERVE_NVMF_H
#define DISKSTACK_TOOLS_SERVE_NVMF_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/serve-net.h"

struct disk;
struct nvmeemu_subsys;
struct netsrv;
struct spec;

#define SERVE_NVMF_MAX_NS 1024

/* Option codes (getopt_long values from 700, beside cmd-serve's, serve-iscsi's
 * (512) and serve-vhost's (600)). */
enum {
	SERVE_NVMF_OPT_LISTEN = 700,
	SERVE_NVMF_OPT_NQN,
	SERVE_NVMF_OPT_NS,
	SERVE_NVMF_OPT_PORTAL,
	SERVE_NVMF_OPT_LAST,
};

#define SERVE_NVMF_LONGOPTS \
	{ "nvme-tcp",                 required_argument, NULL, SERVE_NVMF_OPT_LISTEN }, \
	{ "nqn",                      required_argument, NULL, SERVE_NVMF_OPT_NQN }, \
	{ "ns",                       required_argument, NULL, SERVE_NVMF_OPT_NS }, \
	{ "nvme-portal",              required_argument, NULL, SERVE_NVMF_OPT_PORTAL }

#define SERVE_NVMF_USAGE \
	"NVMe/TCP (docs/nvme.md):\n" \
	"      --nvme-tcp [ADDR:]PORT  serve NVMe/TCP on TCP PORT (4420 is the standard\n" \
	"                           port; an ADDR alone means 4420), with the discovery\n" \
	"                           subsystem; NBD then runs only if an NBD listener or\n" \
	"                           --export is given too\n" \
	"      --nqn NQN            the subsystem NQN (default\n" \
	"                           nqn.2026-12.org.diskstack:<host name>)\n" \
	"      --ns N=SPEC          namespace N (1-1024); SPEC (positional) is namespace 1\n" \
	"      --nvme-portal ADDR:PORT  the address the discovery log advertises (behind NAT)\n" \
	"\n"

struct serve_nvmf_ns {
	unsigned nsid;
	const char *spec_text;          /* borrowed from argv */
	struct spec *spec;              /* owned */
};

struct serve_unit;

struct serve_nvmf {
	const char *listen;             /* --nvme-tcp argument, NULL = off */
	const char *nqn;
	const char *portal;
	char default_nqn[256];
	struct serve_nvmf_ns ns[SERVE_NVMF_MAX_NS];
	unsigned nns;
	struct nvmfsrv *srv;
	struct serve_disks disks;       /* flushed at the end; id: the NSID; owner: NULL
	                                 * (@subsys) or a subsystem added at run time */
	struct nvmeemu_subsys *subsys;  /* borrowed from srv; NULL: none (or removed) */
	/* Subsystems added at run time and served (borrowed from srv). */
	struct nvmeemu_subsys **added;
	unsigned nadded;
	struct nvmeemu_subsys *removed_main;   /* @subsys once removed (its units: owner NULL) */
	const char *default_spec;       /* the positional SPEC's text (namespace 1), set by cmd-serve */
	uint16_t bound_port;
};

static inline bool serve_nvmf_is_opt(int opt)
{
	return opt >= SERVE_NVMF_OPT_LISTEN && opt < SERVE_NVMF_OPT_LAST;
}

/* Takes one option. Returns 0 or an exit code (usage error printed). */
int serve_nvmf_opt(struct serve_nvmf *sn, const char *cmd, int opt, const char *arg);
/* Checks the options and parses the namespace specs; @have_default: a
 * positional SPEC exists (namespace 1). Returns 0 or an exit code. */
int serve_nvmf_check(struct serve_nvmf *sn, const char *cmd, bool have_default);
/* Opens the namespace disks and builds the subsystem; @default_disk
 * (borrowed, NULL when none) becomes namespace 1. Returns 0 or an exit
 * code. On the thread with the reactor. */
int serve_nvmf_open(struct serve_nvmf *sn, const char *cmd, struct disk *default_disk,
		    bool read_only);
/* Listens on the --nvme-tcp address on @net. Returns 0 or an exit code. */
int serve_nvmf_listen(struct serve_nvmf *sn, const char *cmd, struct netsrv *net);
/* Flushes every namespace's disk (after netsrv_run). Returns 0 or 1. */
int serve_nvmf_flush(struct serve_nvmf *sn);
/* Frees everything (after netsrv_free). */
void serve_nvmf_free(struct serve_nvmf *sn);

/* For the control socket (serve-ctl-fe.c), on its thread: adds namespace
 * @nsid over @d (a reference is taken) from @spec_text to subsystem @ss
 * (@sn->subsys or one added at run time, as serve_nvmf_subsys finds it);
 * every controller of @ss gets a Namespace Attribute Changed event.
 * Returns 0, -ENODEV (no subsystem), -EEXIST, -EINVAL (bad nsid or disk;
 * message in @err), -ENOMEM. */
int serve_nvmf_ns_add(struct serve_nvmf *sn, struct nvmeemu_subsys *ss, uint32_t nsid,
		      struct disk *d, const char *spec_text, char *err, size_t errlen);

/* On the control thread: the subsystem named @nqn that serve runs (the
 * command line's, @subsys, or one added at run time), or NULL. */
struct nvmeemu_subsys *serve_nvmf_subsys(struct serve_nvmf *sn, const char *nqn);
/* The NQN of the subsystem of unit @u of sn->disks. */
const char *serve_nvmf_unit_nqn(const struct serve_nvmf *sn, const struct serve_unit *u);

/* On the control thread: makes subsystem @nqn with namespaces @nsids[i]
 * over @disks[i] (borrowed, opened from @specs[i]) and serves it (hosts
 * can connect, the discovery log lists it). Returns 0, -EEXIST, -EINVAL
 * (a bad NQN or disk: message in @err) or -ENOMEM. */
int serve_nvmf_subsys_add(struct serve_nvmf *sn, const char *nqn, unsigned n,
			  const unsigned *nsids, struct disk *const *disks,
			  const char *const *specs, char *err, size_t errlen);
/* On the control thread: removes subsystem @nqn (nvmfsrv_remove_subsys),
 * waits up to @timeout_ms for its controllers to go, then removes its
 * namespaces and flushes their disks. *@nctrls: its controllers (left,
 * on -ETIMEDOUT). Returns 0, -ENOENT, -ETIMEDOUT (it stays hidden; call
 * again), -EIO (a flush failed; it is gone anyway) or -ENOMEM. */
int serve_nvmf_subsys_remove(struct serve_nvmf *sn, const char *nqn, unsigned timeout_ms,
			     unsigned *nctrls);

#endif
