/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-rpc.c: the control socket's JSON-RPC core (ctl/rpc.c) on byte
 * buffers: framing (incomplete texts, several in one buffer, whitespace),
 * requests, notifications, batches, every standard error code and when it
 * closes the connection, parameters passed to methods, error data.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/compiler.h"
#include "ctl/rpc.h"

static unsigned echo_calls;

static json_t *m_echo(struct ctl_call *c UNUSED, json_t *params)
{
	echo_calls++;
	return json_deep_copy(params);
}

static json_t *m_fail(struct ctl_call *c, json_t *params)
{
	json_error_t je;
	int e = 0;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:i}", "errno", &e) < 0)
		return ctl_fail_params(c, &je);
	return ctl_fail_errno(c, -e, "doing %s", "it");
}

static json_t *m_null(struct ctl_call *c UNUSED, json_t *params UNUSED)
{
	return NULL;   /* a bug: no result and no error */
}

static const struct ctl_method methods[] = {
	{ "echo", m_echo, false },
	{ "fail", m_fail, false },
	{ "null", m_null, false },
};
static const struct ctl_rpc rpc = { methods, ARRAY_SIZE(methods), NULL };

/* Feeds @text whole; returns the result kind, the reply in *@reply and
 * the bytes used in *@used. */
static enum ctl_feed feed(const char *text, json_t **reply, size_t *used)
{
	struct ctl_call proto = { 0 };

	return ctl_rpc_feed(&rpc, &proto, text, strlen(text), used, reply);
}

/* One complete request; returns the reply (asserts DONE, whole text used). */
static json_t *one(const char *text)
{
	json_t *r;
	size_t used;

	assert_int_equal(feed(text, &r, &used), CTL_FEED_DONE);
	assert_int_equal(used, strlen(text));
	return r;
}

static int error_code(const json_t *r)
{
	return (int)json_integer_value(json_object_get(json_object_get(r, "error"), "code"));
}

static void test_ctl_rpc_call(void **state UNUSED)
{
	json_t *r = one("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"echo\",\"params\":{\"a\":[1,2]}}");

	assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
	assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
	assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "a")), 2);
	assert_null(json_object_get(r, "error"));
	json_decref(r);
	/* No params: the method sees an empty object. String id kept. */
	r = one("{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"echo\"}");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "x");
	assert_int_equal(json_object_size(json_object_get(r, "result")), 0);
	json_decref(r);
}

static void test_ctl_rpc_framing(void **state UNUSED)
{
	const char *two = "  {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}\n"
			  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}";
	struct ctl_call proto = { 0 };
	json_t *r;
	size_t used, len = strlen(two);

	/* Every strict prefix of the first text asks for more. */
	for (size_t n = 0; n < 42; n++) {
		assert_int_equal(ctl_rpc_feed(&rpc, &proto, two, n, &used, &r), CTL_FEED_NEED_MORE);
		assert_null(r);
		assert_true(used <= n);
	}
	assert_int_equal(ctl_rpc_feed(&rpc, &proto, two, len, &used, &r), CTL_FEED_DONE);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
	assert_true(used < len);
	assert_int_equal(ctl_rpc_feed(&rpc, &proto, two + used, len - used, &used, &r),
			 CTL_FEED_DONE);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
	json_decref(r);
	/* Whitespace only. */
	assert_int_equal(feed(" \n\t", &r, &used), CTL_FEED_NEED_MORE);
	assert_int_equal(used, 3);
}

static void test_ctl_rpc_notification(void **state UNUSED)
{
	json_t *r;

	echo_calls = 0;
	r = one("{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}");
	assert_null(r);
	assert_int_equal(echo_calls, 1);
	/* Not even errors are answered. */
	assert_null(one("{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}"));
	/* id null is a request, not a notification. */
	r = one("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"echo\"}");
	assert_non_null(r);
	assert_true(json_is_null(json_object_get(r, "id")));
	json_decref(r);
}

static void test_ctl_rpc_batch(void **state UNUSED)
{
	json_t *r;

	echo_calls = 0;
	r = one("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},"
		"\"junk\","
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}]");
	assert_true(json_is_array(r));
	assert_int_equal(json_array_size(r), 3);
	assert_int_equal(echo_calls, 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1);
	assert_int_equal(error_code(json_array_get(r, 1)), CTL_ERR_INVALID_REQUEST);
	assert_int_equal(error_code(json_array_get(r, 2)), CTL_ERR_METHOD_NOT_FOUND);
	json_decref(r);
	/* All notifications: no reply at all. */
	assert_null(one("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}]"));
	r = one("[]");
	assert_int_equal(error_code(r), CTL_ERR_INVALID_REQUEST);
	json_decref(r);
}

static void test_ctl_rpc_errors(void **state UNUSED)
{
	static const struct { const char *text; int code; } cases[] = {
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"nope\"}", CTL_ERR_METHOD_NOT_FOUND },
		{ "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"echo\"}", CTL_ERR_INVALID_REQUEST },
		{ "{\"id\":1,\"method\":\"echo\"}", CTL_ERR_INVALID_REQUEST },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", CTL_ERR_INVALID_REQUEST },
		{ "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"echo\"}", CTL_ERR_INVALID_REQUEST },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"x\":1}", CTL_ERR_INVALID_REQUEST },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":[1]}", CTL_ERR_INVALID_PARAMS },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fail\",\"params\":{\"errno\":\"x\"}}", CTL_ERR_INVALID_PARAMS },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fail\",\"params\":{\"errno\":5}}", CTL_ERR_FAILED },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"null\"}", CTL_ERR_INTERNAL },
		{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rpc-get-methods\",\"params\":{\"a\":1}}", CTL_ERR_INVALID_PARAMS },
		{ "17", CTL_ERR_INVALID_REQUEST },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *r = one(cases[i].text);

		if (error_code(r) != cases[i].code)
			fail_msg("%s: code %d, expected %d", cases[i].text, error_code(r), cases[i].code);
		json_decref(r);
	}
}

static void test_ctl_rpc_errno_data(void **state UNUSED)
{
	json_t *r = one("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fail\",\"params\":{\"errno\":5}}");
	json_t *d = json_object_get(json_object_get(r, "error"), "data");

	assert_int_equal(json_integer_value(json_object_get(d, "errno")), EIO);
	assert_string_equal(json_string_value(json_object_get(d, "errname")), "EIO");
	assert_non_null(strstr(json_string_value(json_object_get(d, "message")), "doing it"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"),
							      "message")), "Operation failed");
	json_decref(r);
	/* jansson's own text for an unknown key. */
	r = one("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fail\",\"params\":{\"errno\":5,\"b\":1}}");
	d = json_object_get(json_object_get(r, "error"), "data");
	assert_non_null(strstr(json_string_value(json_object_get(d, "error")), "b"));
	json_decref(r);
}

static void test_ctl_rpc_parse_error_closes(void **state UNUSED)
{
	static const char *const bad[] = {
		"{\"jsonrpc\":\"2.0\",,}",
		"{\"id\":1,\"id\":2}",               /* duplicate key */
		"{\"a\":\"\xff\"}",                   /* not UTF-8 */
		"}",
	};
	json_t *r;
	size_t used;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(feed(bad[i], &r, &used), CTL_FEED_CLOSE);
		assert_int_equal(error_code(r), CTL_ERR_PARSE);
		assert_true(json_is_null(json_object_get(r, "id")));
		json_decref(r);
	}
}

static void test_ctl_rpc_too_large(void **state UNUSED)
{
	size_t n = CTL_MAX_REQUEST_BYTES + 16;
	char *big = malloc(n + 1);
	struct ctl_call proto = { 0 };
	json_t *r;
	size_t used;

	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "[\"", 2);
	memset(big + 2, 'a', n - 2);
	big[n] = '\0';
	assert_int_equal(ctl_rpc_feed(&rpc, &proto, big, n, &used, &r), CTL_FEED_CLOSE);
	assert_int_equal(error_code(r), CTL_ERR_INVALID_REQUEST);
	json_decref(r);
	free(big);
}

static void test_ctl_rpc_dump(void **state UNUSED)
{
	json_t *r = one("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"k\":\"v\"}}");
	char *s = ctl_rpc_dump(r);

	assert_non_null(s);
	assert_string_equal(s, "{\"jsonrpc\":\"2.0\",\"result\":{\"k\":\"v\"},\"id\":1}\n");
	free(s);
	json_decref(r);
	r = one("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rpc-get-methods\"}");
	assert_int_equal(json_array_size(json_object_get(r, "result")), 4);
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_rpc_call),
		cmocka_unit_test(test_ctl_rpc_framing),
		cmocka_unit_test(test_ctl_rpc_notification),
		cmocka_unit_test(test_ctl_rpc_batch),
		cmocka_unit_test(test_ctl_rpc_errors),
		cmocka_unit_test(test_ctl_rpc_errno_data),
		cmocka_unit_test(test_ctl_rpc_parse_error_closes),
		cmocka_unit_test(test_ctl_rpc_too_large),
		cmocka_unit_test(test_ctl_rpc_dump),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
