/* SPDX-License-Identifier: MIT */
/*
 * serve-net.c: the helpers the iSCSI and NVMe/TCP halves of `diskstack
 * serve` share (serve-net.h).
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
#include "storage/backends/url.h"
#include "storage/disk.h"
#include "tools/serve-net.h"
#include "tools/tool.h"

int serve_split_addr(const char *cmd, const char *opt, const char *a, char *host, size_t hlen,
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

void serve_default_name(const char *prefix, char *out, size_t len)
{
	char host[HOST_NAME_MAX + 1] = "localhost";
	size_t o;

	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	o = (size_t)snprintf(out, len, "%s", prefix);
	for (const char *p = host; *p && o + 1 < len; p++) {
		char ch = (char)tolower((unsigned char)*p);

		out[o++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '-') ? ch : '-';
	}
	out[o] = '\0';
}

int serve_listen_tcp(const char *cmd, struct netsrv *net, const struct netsrv_proto *proto,
		     const char *what, const char *opt, const char *listen, uint16_t default_port,
		     uint16_t *bound)
{
	char host[256], err[1024];
	uint64_t port = default_port;
	int ret;

	if ((ret = serve_split_addr(cmd, opt, listen, host, sizeof(host), &port)))
		return ret;
	ret = netsrv_listen_tcp(net, proto, host[0] ? host : NULL, (uint16_t)port, bound, err,
				sizeof(err));
	if (ret < 0)
		return tool_error(cmd, "%s: %s", what, err);
	/* "serve: iSCSI TCP port N", "serve: NVMe/TCP port N" (its name says TCP). */
	if (port == 0)
		log_info("serve: %s%s port %u", what, strstr(what, "TCP") ? "" : " TCP", *bound);
	return 0;
}

int serve_disks_add(struct serve_disks *sd, struct disk *d, const void *owner, unsigned id,
		    const char *spec_text)
{
	struct serve_unit *v = realloc(sd->v, (sd->n + 1) * sizeof(*v));
	char *spec = spec_text ? url_redact_text_dup(spec_text) : NULL;

	if (v)
		sd->v = v;
	if (!v || (spec_text && !spec)) {
		free(spec);
		return -ENOMEM;
	}
	sd->v[sd->n++] = (struct serve_unit){ .disk = disk_ref(d), .owner = owner, .id = id,
					      .spec = spec };
	return 0;
}

int serve_disks_keep(struct serve_disks *sd, const char *cmd, struct disk *d, const void *owner,
		     unsigned id, const char *spec_text)
{
	return serve_disks_add(sd, d, owner, id, spec_text) < 0 ? tool_error(cmd, "out of memory")
								 : 0;
}

int serve_unit_flush(const struct serve_unit *u, const char *proto)
{
	int st;

	if (disk_get_info(u->disk)->read_only)
		return 0;
	st = disk_sync_flush(u->disk);
	if (st != DISK_OK) {
		log_error("%s: flush of unit %u failed: %s", proto, u->id, disk_status_str(st));
		return -EIO;
	}
	return 0;
}

int serve_disks_drop(struct serve_disks *sd, const void *owner, unsigned id, const char *proto)
{
	for (unsigned i = 0; i < sd->n; i++) {
		struct serve_unit u = sd->v[i];
		int ret;

		if (u.owner != owner || u.id != id)
			continue;
		sd->v[i] = sd->v[--sd->n];
		ret = serve_unit_flush(&u, proto);
		disk_unref(u.disk);
		free(u.spec);
		return ret;
	}
	return -ENOENT;
}

int serve_disks_take(struct serve_disks *sd, const void *owner, unsigned id,
		     struct serve_unit *out)
{
	for (unsigned i = 0; i < sd->n; i++) {
		if (sd->v[i].owner != owner || sd->v[i].id != id)
			continue;
		*out = sd->v[i];
		sd->v[i] = sd->v[--sd->n];
		return 0;
	}
	return -ENOENT;
}

int serve_disks_flush(const struct serve_disks *sd, const char *proto)
{
	int status = 0;

	for (unsigned i = 0; i < sd->n; i++)
		if (serve_unit_flush(&sd->v[i], proto) < 0)
			status = 1;
	return status;
}

void serve_disks_free(struct serve_disks *sd)
{
	for (unsigned i = 0; i < sd->n; i++) {
		disk_unref(sd->v[i].disk);
		free(sd->v[i].spec);
	}
	free(sd->v);
	sd->v = NULL;
	sd->n = 0;
}
