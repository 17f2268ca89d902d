/* SPDX-License-Identifier: MIT */
/*
 * server.h: the NVMe/TCP target (diskstack serve --nvme-tcp, docs/nvme.md
 * "The NVMe/TCP target"): the NVM Express TCP Transport Specification 1.0
 * and the Fabrics commands of the NVMe over Fabrics Specification 1.1 on
 * the socket engine (net/netsrv.h), in front of the NVMe command core
 * (nvme_emul/nvme.h). Each TCP connection is one queue; an admin Connect
 * makes a controller with a dynamic controller ID, I/O Connects add its
 * queues. The discovery subsystem (nqn.2014-08.org.nvmexpress.discovery)
 * is served on every listener.
 *
 * Use: netsrv_new, nvmfsrv_new, nvmfsrv_subsys_opts to fill the
 * transport's fields of each subsystem's options, nvmfsrv_add_subsys,
 * nvmfsrv_protocol, the engine's listeners with that protocol,
 * netsrv_start and netsrv_run; after netsrv_free, nvmfsrv_free.
 */
#ifndef DISKSTACK_NVMF_SERVER_H
#define DISKSTACK_NVMF_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct netsrv_proto;
struct nvmfsrv;
struct nvmeemu_subsys;
struct nvmeemu_subsys_opts;

#define NVMF_DEFAULT_PORT 4420
#define NVMF_DISCOVERY_NQN "nqn.2014-08.org.nvmexpress.discovery"

struct nvmfsrv_opts {
	/* I/O queues one controller may connect (Set Features Number of
	 * Queues grants at most this): 0 = 8, at most 63. */
	unsigned max_io_queues;
	/* The address and port the discovery log page advertises (copied);
	 * NULL: the address each host connected to (wrong behind NAT). */
	const char *portal_addr;
	uint16_t portal_port;
	/* Size of the pipes large Reads and Writes splice through (see
	 * server.c): 0 = 2 MiB (1 MiB where the kernel refuses more),
	 * NVMFSRV_NO_PIPES = none (every transfer through memory); other
	 * sizes are for tests and diagnosis (a pipe smaller than a transfer
	 * sends it through memory). */
	unsigned pipe_bytes;
};
#define NVMFSRV_NO_PIPES UINT_MAX

/* Creates a target without subsystems. Returns 0, -EINVAL or -ENOMEM. */
int nvmfsrv_new(const struct nvmfsrv_opts *o, struct nvmfsrv **out);

/* Sets the fields of @o that belong to this transport (fabrics, SGLS,
 * capsule sizes, MAXCMD); the caller fills the rest. */
void nvmfsrv_subsys_opts(struct nvmeemu_subsys_opts *o);

/* Adds subsystem @ss (made with nvmfsrv_subsys_opts); the server owns it
 * from then on, also on failure. Returns 0, -EEXIST (its NQN is taken or
 * is the discovery NQN) or -ENOMEM. Any time, any thread: hosts can
 * connect, and the discovery log page lists it, once this returns. */
int nvmfsrv_add_subsys(struct nvmfsrv *s, struct nvmeemu_subsys *ss);

/* Removes subsystem @nqn: Connect refuses it and the discovery log page
 * leaves it out (its GENCTR changes); its controllers die, their queued
 * commands are aborted and every queue's connection closes on its next
 * tick (within half a second); commands already in the core finish.
 * Asynchronous: nvmfsrv_subsys_ctrls tells when the controllers are gone.
 * The subsystem (namespaces untouched: the caller removes them) stays
 * valid until nvmfsrv_free, in *@out; *@nctrls: its controllers. One
 * removed before is found again. Returns 0, -ENOENT or -ENOMEM. Any
 * thread. */
int nvmfsrv_remove_subsys(struct nvmfsrv *s, const char *nqn, struct nvmeemu_subsys **out,
			  unsigned *nctrls);

/* The controllers of @ss not yet freed. Any thread. */
unsigned nvmfsrv_subsys_ctrls(struct nvmfsrv *s, const struct nvmeemu_subsys *ss);

/* The protocol for the engine's listeners (borrowed from @s, valid until
 * nvmfsrv_free). Returns 0, or -EINVAL when there is no subsystem. */
int nvmfsrv_protocol(struct nvmfsrv *s, const struct netsrv_proto **out);

/* Frees the server and its subsystems (after netsrv_free, or if the
 * engine never ran). NULL allowed. */
void nvmfsrv_free(struct nvmfsrv *s);

#endif
