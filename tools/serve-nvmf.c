/* SPDX-License-Identifier: MIT */
/*
 * serve-nvmf.c: the NVMe/TCP half of `diskstack serve` (serve-nvmf.h): one
 * subsystem whose namespaces are specs, served next to (or instead of)
 * NBD on the same engine.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "net/netsrv.h"
#include "nvme_emul/nvme.h"
#include "nvmf/pdu.h"
#include "nvmf/server.h"
#include "storage/backends/url.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/serve-nvmf.h"
#include "tools/tool.h"

/* Splits PORT, ADDR, ADDR:PORT, [V6] or [V6]:PORT into @host (empty: the
 * default address) and *@port. Returns 0 or an exit code. */
static int split_addr(const char *cmd, const char *opt, const char *a, char *host, size_t hlen,
		      uint64_t *port)
{
	const char *colon = a[0] == '[' ? strstr(a, "]:") : strrchr(a, ':');
	size_t n;

	host[0] = '\0';
	if (a[0] == '[' && colon)
		colon++;
	if (!colon && a[0] && strspn(a, "0123456789") == strlen(a))
		return tool_parse_uint(a, 0, 65535, port) < 0
		       ? tool_usage_error(cmd, "bad %s port '%s'", opt, a) : 0;
	if (colon && a[0] != '[' && strchr(a, ':') != colon)
		return tool_usage_error(cmd, "write IPv6 addresses as [ADDR]:PORT in %s", opt);
	n = colon ? (size_t)(colon - a) : strlen(a);
	if (n == 0 || n >= hlen)
		return tool_usage_error(cmd, "bad %s address '%s'", opt, a);
	memcpy(host, a, n);
	host[n] = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, n);
		host[strcspn(host, "]")] = '\0';
	}
	if (colon && tool_parse_uint(colon + 1, 0, 65535, port) < 0)
		return tool_usage_error(cmd, "bad %s port in '%s'", opt, a);
	return 0;
}

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

/* nqn.2026-12.org.diskstack:<host name>, reduced to safe characters. */
static void default_nqn(char *out, size_t len)
{
	char host[HOST_NAME_MAX + 1] = "localhost";
	size_t o;

	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	o = (size_t)snprintf(out, len, "nqn.2026-12.org.diskstack:");
	for (const char *p = host; *p && o + 1 < len; p++) {
		char ch = (char)tolower((unsigned char)*p);

		out[o++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '-') ? ch : '-';
	}
	out[o] = '\0';
}

int serve_nvmf_check(struct serve_nvmf *sn, const char *cmd, bool have_default)
{
	int ret;

	if (!sn->listen) {
		if (sn->nqn || sn->nns || sn->portal)
			return tool_usage_error(cmd, "--nqn, --ns and --nvme-portal need --nvme-tcp");
		return 0;
	}
	default_nqn(sn->default_nqn, sizeof(sn->default_nqn));
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

/* Records namespace @nsid over @d. Returns 0 or -ENOMEM. */
static int note_unit(struct serve_nvmf *sn, uint32_t nsid, struct disk *d, const char *spec_text)
{
	struct serve_nvmf_unit *v = realloc(sn->units, (sn->nunits + 1) * sizeof(*v));
	char *spec = spec_text ? url_redact_text_dup(spec_text) : NULL;

	if (v)
		sn->units = v;
	if (!v || (spec_text && !spec)) {
		free(spec);
		return -ENOMEM;
	}
	sn->units[sn->nunits++] = (struct serve_nvmf_unit){ .nsid = nsid, .disk = disk_ref(d),
							     .spec = spec };
	return 0;
}

static int flush_unit(const struct serve_nvmf_unit *u)
{
	int st;

	if (disk_get_info(u->disk)->read_only)
		return 0;
	st = disk_sync_flush(u->disk);
	if (st != DISK_OK) {
		log_error("nvme-tcp: flush of namespace %u failed: %s", u->nsid, disk_status_str(st));
		return -EIO;
	}
	return 0;
}

static int add_ns(struct serve_nvmf *sn, const char *cmd, struct nvmeemu_subsys *ss,
		  unsigned nsid, struct disk *d, const char *spec_text)
{
	char err[256] = "";
	int ret = nvmeemu_subsys_add_ns(ss, nsid, d, err, sizeof(err));

	if (ret < 0)
		return tool_error(cmd, "namespace %u: %s", nsid, err[0] ? err : strerror(-ret));
	return note_unit(sn, nsid, d, spec_text) < 0 ? tool_error(cmd, "out of memory") : 0;
}

int serve_nvmf_ns_add(struct serve_nvmf *sn, uint32_t nsid, struct disk *d,
		      const char *spec_text, char *err, size_t errlen)
{
	int ret;

	if (!sn->subsys)
		return -ENODEV;
	ret = nvmeemu_subsys_add_ns(sn->subsys, nsid, d, err, errlen);
	if (ret < 0)
		return ret;
	ret = note_unit(sn, nsid, d, spec_text);
	if (ret < 0)
		(void)nvmeemu_subsys_remove_ns(sn->subsys, nsid);
	return ret;
}

int serve_nvmf_ns_remove(struct serve_nvmf *sn, uint32_t nsid)
{
	int ret;

	if (!sn->subsys)
		return -ENODEV;
	ret = nvmeemu_subsys_remove_ns(sn->subsys, nsid);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < sn->nunits; i++) {
		struct serve_nvmf_unit u = sn->units[i];

		if (u.nsid != nsid)
			continue;
		sn->units[i] = sn->units[--sn->nunits];
		ret = flush_unit(&u);
		disk_unref(u.disk);
		free(u.spec);
		break;
	}
	return ret;
}

int serve_nvmf_open(struct serve_nvmf *sn, const char *cmd, struct disk *default_disk,
		    bool read_only)
{
	struct nvmfsrv_opts o = { 0 };
	struct nvmeemu_subsys_opts so = { .nqn = sn->nqn ? sn->nqn : sn->default_nqn };
	struct nvmeemu_subsys *ss = NULL;
	char host[256], err[256] = "";
	uint64_t port = 0;
	int ret;

	if (!sn->listen)
		return 0;
	if (sn->portal) {
		if ((ret = split_addr(cmd, "--nvme-portal", sn->portal, host, sizeof(host), &port)))
			return ret;
		o.portal_addr = host[0] ? host : NULL;
		o.portal_port = (uint16_t)port;
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
	char host[256], err[1024];
	uint64_t port = NVMF_DEFAULT_PORT;
	int ret;

	if (!sn->listen)
		return 0;
	if (nvmfsrv_protocol(sn->srv, &proto) < 0)
		return tool_error(cmd, "no NVMe subsystem to serve");
	if ((ret = split_addr(cmd, "--nvme-tcp", sn->listen, host, sizeof(host), &port)))
		return ret;
	ret = netsrv_listen_tcp(net, proto, host[0] ? host : NULL, (uint16_t)port, &sn->bound_port,
				err, sizeof(err));
	if (ret < 0)
		return tool_error(cmd, "NVMe/TCP: %s", err);
	if (port == 0)
		log_info("serve: NVMe/TCP port %u", sn->bound_port);
	return 0;
}

int serve_nvmf_flush(struct serve_nvmf *sn)
{
	int status = 0;

	for (unsigned i = 0; i < sn->nunits; i++)
		if (flush_unit(&sn->units[i]) < 0)
			status = 1;
	return status;
}

void serve_nvmf_free(struct serve_nvmf *sn)
{
	nvmfsrv_free(sn->srv);
	sn->srv = NULL;
	sn->subsys = NULL;
	for (unsigned i = 0; i < sn->nunits; i++) {
		disk_unref(sn->units[i].disk);
		free(sn->units[i].spec);
	}
	free(sn->units);
	sn->units = NULL;
	sn->nunits = 0;
	for (unsigned i = 0; i < sn->nns; i++)
		spec_free(sn->ns[i].spec);
	sn->nns = 0;
}
