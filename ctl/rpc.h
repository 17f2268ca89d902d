/* SPDX-License-Identifier: MIT */
/*
 * rpc.h: the JSON-RPC 2.0 core of the control socket (docs/ctl.md;
 * the JSON-RPC 2.0 specification, jsonrpc.org/specification): framing of
 * a byte stream into JSON texts, request validation, batches,
 * notifications, the error object and the method table. No sockets here
 * (ctl/server.h has them), so the parser and dispatcher can be unit-tested
 * and fuzzed on byte buffers.
 *
 * Methods take their parameters by name (an object; positional arrays are
 * refused with -32602) and return a result or fail with one of the codes
 * below. They run on the control thread, one at a time.
 */
#ifndef DISKSTACK_CTL_RPC_H
#define DISKSTACK_CTL_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* Standard JSON-RPC 2.0 codes. */
#define CTL_ERR_PARSE            (-32700)
#define CTL_ERR_INVALID_REQUEST  (-32600)
#define CTL_ERR_METHOD_NOT_FOUND (-32601)
#define CTL_ERR_INVALID_PARAMS   (-32602)
#define CTL_ERR_INTERNAL         (-32603)
/* diskstack's codes (the server range -32000..-32099); docs/ctl.md. */
#define CTL_ERR_FAILED           (-32000)   /* an OS error: data {errno, errname, message} */
#define CTL_ERR_NOT_FOUND        (-32001)   /* data {target} */
#define CTL_ERR_EXISTS           (-32002)   /* data {target, exists: true} */
#define CTL_ERR_BAD_SPEC         (-32003)   /* data {message} */
#define CTL_ERR_NOT_SUPPORTED    (-32004)   /* data {target, reason} */
#define CTL_ERR_BUSY             (-32005)   /* data {connections} */
#define CTL_ERR_PERMISSION       (-32006)
#define CTL_ERR_SHUTTING_DOWN    (-32007)

/* Largest request text; a longer one is refused and the connection closed. */
#define CTL_MAX_REQUEST_BYTES (1u << 20)

/* One call being handled. */
struct ctl_call {
	void *ctx;                  /* the method table's context (borrowed) */
	uid_t uid;                  /* the peer (SO_PEERCRED) */
	pid_t pid;
	const char *method;         /* borrowed for the call */
	json_t *error;              /* set by ctl_fail*: the error object (owned) */
};

/* A method: returns the result (a new reference) or NULL after one of the
 * ctl_fail functions. @params is an object (empty when none was given),
 * borrowed. */
struct ctl_method {
	const char *name;
	json_t *(*fn)(struct ctl_call *c, json_t *params);
	bool mutating;              /* logged at INFO with the peer */
};

struct ctl_rpc {
	const struct ctl_method *methods;   /* borrowed, @nmethods entries */
	size_t nmethods;
	void *ctx;
};

/* Fails the call with @code, the standard message for it, and @data
 * (stolen; NULL = none). Returns NULL. */
json_t *ctl_fail(struct ctl_call *c, int code, json_t *data);
/* -32000 with data {errno, errname, message} for -errno @err, the message
 * formatted (e.g. what was being done). Returns NULL. */
json_t *ctl_fail_errno(struct ctl_call *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* -32602 with data {error: @je's text} after a failed json_unpack_ex. */
json_t *ctl_fail_params(struct ctl_call *c, const json_error_t *je);
/* -32602 with data {error: formatted text}. */
json_t *ctl_fail_paramf(struct ctl_call *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The standard message of @code ("Parse error", "Not found", ...). */
const char *ctl_error_message(int code);

/* What ctl_rpc_feed did. */
enum ctl_feed {
	CTL_FEED_NEED_MORE = 0,     /* no complete JSON text yet: read more */
	CTL_FEED_DONE,              /* one text handled; *consumed bytes used */
	CTL_FEED_CLOSE,             /* unrecoverable (parse error, too large): send *reply, close */
};

/*
 * Handles the first JSON text in @buf[0..@len): a request, a notification
 * or a batch. *@reply gets the reply (a new reference) or NULL when there
 * is nothing to answer (notifications, all-notification batches).
 * *@consumed gets the bytes used (leading whitespace included). Any
 * thread; methods run on the calling thread.
 */
enum ctl_feed ctl_rpc_feed(const struct ctl_rpc *rpc, struct ctl_call *proto, const char *buf,
			   size_t len, size_t *consumed, json_t **reply);

/* The reply text: compact JSON plus "\n" (malloc'd, NUL-terminated), or
 * NULL on out of memory. */
char *ctl_rpc_dump(const json_t *reply);

/* The names of the methods of @rpc plus "rpc-get-methods" (an array). */
json_t *ctl_rpc_method_names(const struct ctl_rpc *rpc);

#endif
