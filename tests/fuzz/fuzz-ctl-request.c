/* SPDX-License-Identifier: MIT */
/*
 * fuzz-ctl-request.c: libFuzzer target for the control socket's request
 * parser and dispatcher (ctl/rpc.c). The input is a byte stream as a
 * client would send it: texts are taken off its front as the server does
 * (ctl/server.c) until it asks for more or closes; each reply must be a
 * JSON-RPC response (or batch of them) that serialises. Methods unpack
 * parameters the way the real ones do (strict, typed, optional keys).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "ctl/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *m_add(struct ctl_call *c, json_t *params)
{
	const char *name, *spec, *desc = NULL;
	int ro = 0;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:s, s?:b}", "name", &name,
			   "spec", &spec, "description", &desc, "read_only", &ro) < 0)
		return ctl_fail_params(c, &je);
	if (strcmp(name, "exists") == 0)
		return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:b}", "target", name, "exists", 1));
	return json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)strlen(spec));
}

static json_t *m_delay(struct ctl_call *c, json_t *params)
{
	json_int_t r = 0, w = 0;
	const char *target;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s?:I, s?:I}", "target", &target,
			   "read_us", &r, "write_us", &w) < 0)
		return ctl_fail_params(c, &je);
	if (r < 0 || w < 0)
		return ctl_fail_errno(c, -EINVAL, "delay of %s", target);
	return json_pack("{s:I, s:I}", "read_us", r, "write_us", w);
}

static json_t *m_info(struct ctl_call *c UNUSED, json_t *params UNUSED)
{
	return json_object();
}

static const struct ctl_method methods[] = {
	{ "export-add", m_add, true },
	{ "delay-set", m_delay, true },
	{ "server-info", m_info, false },
};
static const struct ctl_rpc rpc = { methods, ARRAY_SIZE(methods), NULL };

static void check_reply(const json_t *r)
{
	size_t i;
	json_t *e;
	char *s;

	if (json_is_array(r)) {
		if (json_array_size(r) == 0)
			abort();
		json_array_foreach(r, i, e)
			check_reply(e);
	} else if (!json_is_object(r) || !json_object_get(r, "id") ||
		   !!json_object_get(r, "result") == !!json_object_get(r, "error")) {
		abort();
	}
	s = ctl_rpc_dump(r);
	if (!s)
		abort();
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	while (off < size) {
		struct ctl_call proto = { .ctx = NULL };
		size_t used = 0;
		json_t *reply = NULL;
		enum ctl_feed f = ctl_rpc_feed(&rpc, &proto, buf + off, size - off, &used, &reply);

		if (used > size - off)
			abort();
		if (reply)
			check_reply(reply);
		json_decref(reply);
		if (f != CTL_FEED_DONE)
			break;
		if (used == 0)
			abort();       /* no progress: the server would spin */
		off += used;
	}
	return 0;
}
