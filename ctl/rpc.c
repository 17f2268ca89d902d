/* SPDX-License-Identifier: MIT */
/*
 * rpc.c: the JSON-RPC 2.0 core (rpc.h).
 *
 * Notes on the design
 * -------------------
 * - Framing: the stream is a sequence of JSON texts with optional
 *   whitespace between them (newline-delimited in practice, but not
 *   required). jansson parses the first value with JSON_DISABLE_EOF_CHECK
 *   and reports where it stopped; a premature end of input means "read
 *   more". Anything else that fails to parse is -32700 and the connection
 *   closes: a byte stream cannot be resynchronised reliably after a
 *   syntax error. Duplicate keys are a parse error (JSON_REJECT_DUPLICATES).
 * - Validation follows the specification's section 4 strictly: an object
 *   with "jsonrpc": "2.0", a string "method", optional "params" (an object
 *   here) and optional "id" (string, number or null); any other member is
 *   an invalid request. A request without "id" is a notification: it runs
 *   and gets no reply, not even an error. A batch is an array of requests;
 *   an empty one is an invalid request; its replies form an array, left
 *   out when every member was a notification.
 * - Errors carry the request's id when it could be read, else null.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/rpc.h"

const char *ctl_error_message(int code)
{
	switch (code) {
	case CTL_ERR_PARSE: return "Parse error";
	case CTL_ERR_INVALID_REQUEST: return "Invalid Request";
	case CTL_ERR_METHOD_NOT_FOUND: return "Method not found";
	case CTL_ERR_INVALID_PARAMS: return "Invalid params";
	case CTL_ERR_INTERNAL: return "Internal error";
	case CTL_ERR_FAILED: return "Operation failed";
	case CTL_ERR_NOT_FOUND: return "Not found";
	case CTL_ERR_EXISTS: return "Already exists";
	case CTL_ERR_BAD_SPEC: return "Invalid spec";
	case CTL_ERR_NOT_SUPPORTED: return "Not supported";
	case CTL_ERR_BUSY: return "Busy";
	case CTL_ERR_PERMISSION: return "Permission denied";
	case CTL_ERR_SHUTTING_DOWN: return "Shutting down";
	default: return "Server error";
	}
}

static json_t *error_object(int code, json_t *data)
{
	json_t *e = json_pack("{s:i, s:s}", "code", code, "message", ctl_error_message(code));

	if (e && data)
		json_object_set_new(e, "data", data);
	else
		json_decref(data);
	return e;
}

json_t *ctl_fail(struct ctl_call *c, int code, json_t *data)
{
	json_decref(c->error);
	c->error = error_object(code, data);
	return NULL;
}

/* The symbolic name of errno @e ("EIO"); "E?" when unknown. */
static const char *errno_name(int e)
{
	switch (e) {
#define N(x) case x: return #x
	N(EPERM); N(ENOENT); N(EIO); N(ENXIO); N(E2BIG); N(EBADF); N(EAGAIN); N(ENOMEM);
	N(EACCES); N(EFAULT); N(EBUSY); N(EEXIST); N(ENODEV); N(ENOTDIR); N(EISDIR);
	N(EINVAL); N(ENFILE); N(EMFILE); N(EFBIG); N(ENOSPC); N(ESPIPE); N(EROFS); N(ERANGE);
	N(ENAMETOOLONG); N(ENOSYS); N(EOPNOTSUPP); N(ETIMEDOUT); N(ECONNREFUSED);
	N(EHOSTUNREACH); N(EOVERFLOW); N(ECANCELED); N(ESHUTDOWN);
#undef N
	default: return "E?";
	}
}

json_t *ctl_fail_errno(struct ctl_call *c, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int e = err < 0 ? -err : err;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ctl_fail(c, CTL_ERR_FAILED,
			json_pack("{s:i, s:s, s:s++}", "errno", e, "errname", errno_name(e),
				  "message", msg, ": ", strerror(e)));
}

json_t *ctl_fail_params(struct ctl_call *c, const json_error_t *je)
{
	return ctl_fail(c, CTL_ERR_INVALID_PARAMS, json_pack("{s:s}", "error", je->text));
}

json_t *ctl_fail_paramf(struct ctl_call *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ctl_fail(c, CTL_ERR_INVALID_PARAMS, json_pack("{s:s}", "error", msg));
}

json_t *ctl_rpc_method_names(const struct ctl_rpc *rpc)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	json_array_append_new(a, json_string("rpc-get-methods"));
	for (size_t i = 0; i < rpc->nmethods; i++)
		json_array_append_new(a, json_string(rpc->methods[i].name));
	return a;
}

static json_t *reply_error(json_t *id, json_t *error)
{
	json_t *r = json_pack("{s:s, s:o}", "jsonrpc", "2.0", "error", error);

	if (r)
		json_object_set(r, "id", id ? id : json_null());
	return r;
}

static json_t *reply_code(json_t *id, int code, json_t *data)
{
	return reply_error(id, error_object(code, data));
}

static const struct ctl_method *find_method(const struct ctl_rpc *rpc, const char *name)
{
	for (size_t i = 0; i < rpc->nmethods; i++)
		if (strcmp(rpc->methods[i].name, name) == 0)
			return &rpc->methods[i];
	return NULL;
}

/* One request object (or anything a batch holds). Returns the reply, or
 * NULL for a notification. */
static json_t *handle_one(const struct ctl_rpc *rpc, const struct ctl_call *proto, json_t *req)
{
	json_t *id = NULL, *params = NULL, *version, *method, *result;
	const struct ctl_method *m;
	struct ctl_call call = *proto;
	bool has_id;
	const char *key;
	json_t *val;

	if (!json_is_object(req))
		return reply_code(NULL, CTL_ERR_INVALID_REQUEST,
				  json_pack("{s:s}", "error", "a request is a JSON object"));
	has_id = json_object_get(req, "id") != NULL;
	if (has_id) {
		id = json_object_get(req, "id");
		if (!json_is_string(id) && !json_is_number(id) && !json_is_null(id))
			return reply_code(NULL, CTL_ERR_INVALID_REQUEST,
					  json_pack("{s:s}", "error", "id must be a string, a number or null"));
	}
	json_object_foreach(req, key, val) {
		if (strcmp(key, "jsonrpc") && strcmp(key, "method") && strcmp(key, "params") &&
		    strcmp(key, "id"))
			return reply_code(id, CTL_ERR_INVALID_REQUEST,
					  json_pack("{s:s, s:s}", "error", "unknown member", "member", key));
	}
	version = json_object_get(req, "jsonrpc");
	if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0)
		return reply_code(id, CTL_ERR_INVALID_REQUEST,
				  json_pack("{s:s}", "error", "\"jsonrpc\" must be \"2.0\""));
	method = json_object_get(req, "method");
	if (!json_is_string(method))
		return reply_code(id, CTL_ERR_INVALID_REQUEST,
				  json_pack("{s:s}", "error", "\"method\" must be a string"));
	params = json_object_get(req, "params");
	if (params && !json_is_object(params)) {
		result = reply_code(id, CTL_ERR_INVALID_PARAMS,
				    json_pack("{s:s}", "error", "params must be an object (by name)"));
		goto out;
	}
	call.method = json_string_value(method);
	call.error = NULL;
	if (strcmp(call.method, "rpc-get-methods") == 0) {
		result = params && json_object_size(params)
			 ? ctl_fail_paramf(&call, "rpc-get-methods takes no parameters")
			 : ctl_rpc_method_names(rpc);
	} else if (!(m = find_method(rpc, call.method))) {
		result = ctl_fail(&call, CTL_ERR_METHOD_NOT_FOUND,
				  json_pack("{s:s}", "method", call.method));
	} else {
		json_t *empty = params ? NULL : json_object();

		result = m->fn(&call, params ? params : empty);
		json_decref(empty);
	}
	if (!result && !call.error)
		ctl_fail(&call, CTL_ERR_INTERNAL, NULL);
	if (result)
		result = json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result, "id",
				   id ? id : json_null());
	else
		result = reply_error(id, call.error);
out:
	if (!has_id) {
		json_decref(result);   /* notifications are never answered */
		return NULL;
	}
	return result;
}

static json_t *handle_value(const struct ctl_rpc *rpc, const struct ctl_call *proto, json_t *v)
{
	json_t *out, *elem;
	size_t i;

	if (!json_is_array(v))
		return handle_one(rpc, proto, v);
	if (json_array_size(v) == 0)
		return reply_code(NULL, CTL_ERR_INVALID_REQUEST,
				  json_pack("{s:s}", "error", "empty batch"));
	out = json_array();
	if (!out)
		return NULL;
	json_array_foreach(v, i, elem) {
		json_t *r = handle_one(rpc, proto, elem);

		if (r)
			json_array_append_new(out, r);
	}
	if (json_array_size(out) == 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

enum ctl_feed ctl_rpc_feed(const struct ctl_rpc *rpc, struct ctl_call *proto, const char *buf,
			   size_t len, size_t *consumed, json_t **reply)
{
	json_error_t je;
	size_t skip = 0;
	json_t *v;

	*reply = NULL;
	*consumed = 0;
	while (skip < len && (buf[skip] == ' ' || buf[skip] == '\t' || buf[skip] == '\n' ||
			      buf[skip] == '\r'))
		skip++;
	if (skip == len) {
		*consumed = skip;
		return CTL_FEED_NEED_MORE;
	}
	v = json_loadb(buf + skip, len - skip,
		       JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!v) {
		if (json_error_code(&je) == json_error_premature_end_of_input &&
		    len - skip < CTL_MAX_REQUEST_BYTES) {
			*consumed = skip;
			return CTL_FEED_NEED_MORE;
		}
		if (json_error_code(&je) == json_error_premature_end_of_input)
			*reply = reply_code(NULL, CTL_ERR_INVALID_REQUEST,
					    json_pack("{s:s}", "error", "request too large"));
		else
			*reply = reply_code(NULL, CTL_ERR_PARSE,
					    json_pack("{s:s, s:i}", "error", je.text,
						      "position", (json_int_t)(skip + (size_t)je.position)));
		*consumed = len;
		return CTL_FEED_CLOSE;
	}
	*consumed = skip + (size_t)je.position;
	if (*consumed > len)
		*consumed = len;
	*reply = handle_value(rpc, proto, v);
	json_decref(v);
	return CTL_FEED_DONE;
}

char *ctl_rpc_dump(const json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY), *t;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return NULL;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	return t;
}
