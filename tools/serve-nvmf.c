/* SPDX-License-Identifier: MIT */
/*
 * serve-nvmf.c: the NVMe/TCP half of `diskstack serve` (serve-nvmf.h): one
 * subsystem whose namespaces are specs, served next to (or instead of)
 * NBD on the same engine.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reactor.h"
#include "net/netsrv.h"
#include "nvme_emul/nvme.h"
#include "nvmf/pdu.h"
#include "nvmf/server.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/serve-net.h"
#include "tools/serve-nvmf.h"
#include "tools/tool.h"

int serve_nvmf_opt(struct serve_nvmf *sn, const char *cmd, int opt, const char *arg)
{
	switch (opt) {
	case SERVE_NVMF_OPT_LISTEN:
		sn->listen = arg;
		return 0;
	case SERVE_NVMF_OPT_NQN:
		if (strlen(arg) > NVMF_NQN_MAX || strncmp(arg, "nqn.", 4) != 0 ||
		    strcmp(arg, NVMF_DISCOVERY_NQN) == 0)
			return tool_usage_error(cmd, "--nqn wants an NQN (nqn.YYYY-MM.domain:name, at "
						"most %u bytes), got '%s'", NVMF_NQN_MAX, arg);
		sn->nqn = arg;
		return 0;
	case SERVE_NVMF_OPT_NS: {
		const char *eq = strchr(arg, '=');
		char num[16];
		uint64_t v;

		if (!eq || (size_t)(eq - arg) >= sizeof(num))
			return tool_usage_error(cmd, "--ns wants N=SPEC, got '%s'", arg);
		memcpy(num, arg, (size_t)(eq - arg));
		num[eq - arg] = '\0';
		if (tool_parse_uint(num, 1, NVMEEMU_MAX_NSID, &v) < 0)
			return tool_usage_error(cmd, "bad namespace ID '%s' (1-%u)", num,
						NVMEEMU_MAX_NSID);
		if (sn->nns == SERVE_NVMF_MAX_NS)
			return tool_usage_error(cmd, "too many namespaces");
		sn->ns[sn->nns].nsid = (unsigned)v;
		sn->ns[sn->nns].spec_text = eq + 1;
		sn->nns++;
		return 0;
	}
	case SERVE_NVMF_OPT_PORTAL:
		sn->portal = arg;
		return 0;
	}
	return tool_usage_error(cmd, "unknown NVMe/TCP option");
}

int serve_nvmf_check(struct serve_nvmf *sn, const char *cmd, bool have_default)
{
	int ret;

	if (!sn->listen) {
		if (sn->nqn || sn->nns || sn->portal)
			return tool_usage_error(cmd, "--nqn, --ns and --nvme-portal need --nvme-tcp");
		return 0;
	}
	serve_default_name("nqn.2026-12.org.diskstack:", sn->default_nqn, sizeof(sn->default_nqn));
	for (unsigned i = 0; i < sn->nns; i++) {
		if (have_default && sn->ns[i].nsid == 1)
			return tool_usage_error(cmd, "namespace 1 is SPEC already");
		for (unsigned j = 0; j < i; j++)
			if (sn->ns[j].nsid == sn->ns[i].nsid)
				return tool_usage_error(cmd, "namespace %u given twice",
							sn->ns[i].nsid);
		ret = tool_parse_spec(cmd, "--ns SPEC", sn->ns[i].spec_text, &sn->ns[i].spec);
		if (ret)
			return ret;
	}
	if (!have_default && sn->nns == 0)
		return tool_usage_error(cmd, "nothing to serve over NVMe/TCP: give a SPEC or "
					"--ns N=SPEC");
	return 0;
}

static int add_ns(struct serve_nvmf *sn, const char *cmd, struct nvmeemu_subsys *ss,
		  unsigned nsid, struct disk *d, const char *spec_text)
{
	char err[256] = "";
	int ret = nvmeemu_subsys_add_ns(ss, nsid, d, err, sizeof(err));

	if (ret < 0)
		return tool_error(cmd, "namespace %u: %s", nsid, err[0] ? err : strerror(-ret));
	return serve_disks_keep(&sn->disks, cmd, d, NULL, nsid, spec_text);
}

int serve_nvmf_ns_add(struct serve_nvmf *sn, struct nvmeemu_subsys *ss, uint32_t nsid,
		      struct disk *d, const char *spec_text, char *err, size_t errlen)
{
	int ret;

	if (!ss)
		return -ENODEV;
	ret = nvmeemu_subsys_add_ns(ss, nsid, d, err, errlen);
	if (ret < 0)
		return ret;
	/* sn->disks: the command line's subsystem owns its units as NULL. */
	ret = serve_disks_add(&sn->disks, d, ss == sn->subsys ? NULL : ss, nsid, spec_text);
	if (ret < 0)
		(void)nvmeemu_subsys_remove_ns(ss, nsid);
	return ret;
}

struct nvmeemu_subsys *serve_nvmf_subsys(struct serve_nvmf *sn, const char *nqn)
{
	if (sn->subsys && strcmp(nvmeemu_subsys_nqn(sn->subsys), nqn) == 0)
		return sn->subsys;
	for (unsigned i = 0; i < sn->nadded; i++)
		if (strcmp(nvmeemu_subsys_nqn(sn->added[i]), nqn) == 0)
			return sn->added[i];
	return NULL;
}

const char *serve_nvmf_unit_nqn(const struct serve_nvmf *sn, const struct serve_unit *u)
{
	return nvmeemu_subsys_nqn(u->owner ? u->owner : sn->subsys);
}

int serve_nvmf_subsys_add(struct serve_nvmf *sn, const char *nqn, unsigned n,
			  const unsigned *nsids, struct disk *const *disks,
			  const char *const *specs, char *err, size_t errlen)
{
	struct nvmeemu_subsys_opts so = { .nqn = nqn };
	struct nvmeemu_subsys *ss = NULL, **v;
	unsigned left;
	int ret;

	if (strlen(nqn) > NVMF_NQN_MAX || strncmp(nqn, "nqn.", 4) != 0) {
		snprintf(err, errlen, "name must be an NQN (nqn.YYYY-MM.domain:name, at most %u "
			 "bytes)", NVMF_NQN_MAX);
		return -EINVAL;
	}
	if (strcmp(nqn, NVMF_DISCOVERY_NQN) == 0 || serve_nvmf_subsys(sn, nqn))
		return -EEXIST;
	v = realloc(sn->added, (sn->nadded + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	sn->added = v;
	nvmfsrv_subsys_opts(&so);
	ret = nvmeemu_subsys_new(&so, &ss, err, errlen);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < n; i++)
		if ((ret = nvmeemu_subsys_add_ns(ss, nsids[i], disks[i], err, errlen)) < 0) {
			nvmeemu_subsys_free(ss);
			return ret == -EEXIST ? -EINVAL : ret;
		}
	ret = nvmfsrv_add_subsys(sn->srv, ss);
	if (ret < 0)
		return ret;
	sn->added[sn->nadded++] = ss;
	for (unsigned i = 0; i < n; i++)
		if ((ret = serve_disks_add(&sn->disks, disks[i], ss, nsids[i], specs[i])) < 0) {
			(void)serve_nvmf_subsys_remove(sn, nqn, 0, &left);
			return ret;
		}
	return 0;
}

int serve_nvmf_subsys_remove(struct serve_nvmf *sn, const char *nqn, unsigned timeout_ms,
			     unsigned *nctrls)
{
	uint64_t deadline = reactor_now_ns() + (uint64_t)timeout_ms * 1000000u;
	struct nvmeemu_subsys *ss, *live = serve_nvmf_subsys(sn, nqn);
	const void *owner;
	bool units = false;
	int ret, status = 0;

	ret = nvmfsrv_remove_subsys(sn->srv, nqn, &ss, nctrls);
	if (ret < 0)
		return ret;     /* -ENOENT, or -ENOMEM with nothing changed */
	owner = ss == sn->subsys ? NULL : ss;
	if (live) {
		if (ss == sn->subsys) {
			/* The command line's subsystem: its units stay owned by NULL
			 * until they are dropped below. */
			sn->subsys = NULL;
			sn->removed_main = ss;
		}
		for (unsigned i = 0; i < sn->nadded; i++)
			if (sn->added[i] == ss)
				sn->added[i] = sn->added[--sn->nadded];
	}
	if (ss == sn->removed_main)
		owner = NULL;
	for (unsigned i = 0; i < sn->disks.n; i++)
		units |= sn->disks.v[i].owner == owner;
	if (!live && !units && nvmfsrv_subsys_ctrls(sn->srv, ss) == 0)
		return -ENOENT;         /* removed before, completely */
	while (nvmfsrv_subsys_ctrls(sn->srv, ss) > 0) {
		if (reactor_now_ns() >= deadline) {
			*nctrls = nvmfsrv_subsys_ctrls(sn->srv, ss);
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
	for (unsigned i = sn->disks.n; i-- > 0;) {
		unsigned nsid;

		if (i >= sn->disks.n || sn->disks.v[i].owner != owner)
			continue;
		nsid = sn->disks.v[i].id;
		(void)nvmeemu_subsys_remove_ns(ss, nsid);
		if (serve_disks_drop(&sn->disks, owner, nsid, "nvme-tcp") == -EIO)
			status = -EIO;
	}
	return status;
}

int serve_nvmf_open(struct serve_nvmf *sn, const char *cmd, struct disk *default_disk,
		    bool read_only)
{
	struct nvmfsrv_opts o = { 0 };
	struct nvmeemu_subsys_opts so = { .nqn = sn->nqn ? sn->nqn : sn->default_nqn };
	struct nvmeemu_subsys *ss = NULL;
	char host[256], err[256] = "";
	uint64_t port = 0;
	const char *env;
	int ret;

	if (!sn->listen)
		return 0;
	if (sn->portal) {
		ret = serve_split_addr(cmd, "--nvme-portal", sn->portal, host, sizeof(host), &port);
		if (ret)
			return ret;
		o.portal_addr = host[0] ? host : NULL;
		o.portal_port = (uint16_t)port;
	}
	/* For tests and diagnosis: the size of the splice pipes, or none
	 * (docs/nvme.md, "Zero-copy transfers"). */
	env = getenv("DISKSTACK_NVMF_PIPE");
	if (env && *env) {
		char *end;
		unsigned long v = strtoul(env, &end, 0);

		if (strcmp(env, "off") == 0)
			o.pipe_bytes = NVMFSRV_NO_PIPES;
		else if (*end == '\0' && v >= 4096 && v <= (1ul << 30))
			o.pipe_bytes = (unsigned)v;
		else
			log_warn("DISKSTACK_NVMF_PIPE=%s ignored: it takes off or a size in bytes", env);
	}
	ret = nvmfsrv_new(&o, &sn->srv);
	if (ret < 0)
		return tool_error(cmd, "cannot create the NVMe/TCP server: %s", strerror(-ret));
	nvmfsrv_subsys_opts(&so);
	ret = nvmeemu_subsys_new(&so, &ss, err, sizeof(err));
	if (ret < 0)
		return tool_error(cmd, "subsystem: %s", err[0] ? err : strerror(-ret));
	if (default_disk && (ret = add_ns(sn, cmd, ss, 1, default_disk, sn->default_spec)) != 0) {
		nvmeemu_subsys_free(ss);
		return ret;
	}
	for (unsigned i = 0; i < sn->nns; i++) {
		struct disk *d = NULL;

		ret = tool_open_spec(cmd, "--ns SPEC", sn->ns[i].spec, read_only, &d);
		if (ret == 0) {
			ret = add_ns(sn, cmd, ss, sn->ns[i].nsid, d, sn->ns[i].spec_text);
			disk_unref(d);
		}
		if (ret) {
			nvmeemu_subsys_free(ss);
			return ret;
		}
	}
	ret = nvmfsrv_add_subsys(sn->srv, ss);
	if (ret < 0)
		return tool_error(cmd, "subsystem '%s': %s", so.nqn, strerror(-ret));
	sn->subsys = ss;   /* owned by the server */
	log_info("serve: NVMe/TCP subsystem %s", so.nqn);
	return 0;
}

int serve_nvmf_listen(struct serve_nvmf *sn, const char *cmd, struct netsrv *net)
{
	const struct netsrv_proto *proto;

	if (!sn->listen)
		return 0;
	if (nvmfsrv_protocol(sn->srv, &proto) < 0)
		return tool_error(cmd, "no NVMe subsystem to serve");
	return serve_listen_tcp(cmd, net, proto, "NVMe/TCP", "--nvme-tcp", sn->listen,
				NVMF_DEFAULT_PORT, &sn->bound_port);
}

int serve_nvmf_flush(struct serve_nvmf *sn)
{
	return serve_disks_flush(&sn->disks, "nvme-tcp");
}

void serve_nvmf_free(struct serve_nvmf *sn)
{
	nvmfsrv_free(sn->srv);
	sn->srv = NULL;
	serve_disks_free(&sn->disks);
	sn->subsys = NULL;
	sn->removed_main = NULL;
	free(sn->added);
	sn->added = NULL;
	sn->nadded = 0;
	for (unsigned i = 0; i < sn->nns; i++)
		spec_free(sn->ns[i].spec);
	sn->nns = 0;
}
