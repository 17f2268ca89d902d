/* SPDX-License-Identifier: MIT */
/*
 * cmd-ctl.c: `diskstack ctl [--socket PATH] [--pretty] METHOD [key=value...]`
 * — one JSON-RPC 2.0 call to a running serve's control socket
 * (docs/ctl.md); prints the result as JSON.
 *
 * A value is sent as JSON when it parses as JSON (size=1048576 is a
 * number, read_only=true a boolean, x=null null), else as a string;
 * quoting it as a JSON string (name='"007"') forces a string.
 * Exit status: 0 ok, 1 the server answered with an error (code, message
 * and data on stderr), 2 usage, 3 cannot connect, 4 a reply that is not
 * JSON-RPC.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/tool.h"

#define CTL_EXIT_CONNECT 3
#define CTL_EXIT_PROTOCOL 4

static void ctl_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack ctl [-S PATH] [--pretty] METHOD [KEY=VALUE ...]\n"
		"\n"
		"Calls METHOD on a running 'diskstack serve --control PATH' and prints the\n"
		"result as JSON. VALUE is sent as JSON when it parses as JSON, else as a\n"
		"string ('\"007\"' forces a string). 'rpc-get-methods' lists the methods.\n"
		"\n"
		"  -S, --socket PATH   the control socket (default: $DISKSTACK_CONTROL)\n"
		"  -p, --pretty        indent the JSON output\n"
		"  -h, --help          show this help\n"
		"\n"
		"Exit status: 0 ok, 1 the method failed (the error on stderr), 2 usage,\n"
		"3 cannot connect, 4 a malformed reply.\n"
		"\n"
		"Examples:\n"
		"  diskstack ctl -S /run/ds.ctl export-add name=vm3 spec=mem:1G\n"
		"  diskstack ctl -S /run/ds.ctl delay-set target=vm3 read_us=5000\n"
		"  diskstack ctl -S /run/ds.ctl --pretty stats reset=true\n"
		"See docs/ctl.md.\n");
}

/* KEY=VALUE into @params. Returns 0 or -EINVAL. */
static int ctl_add_param(json_t *params, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *key;
	json_t *v;

	if (!eq || eq == arg)
		return -EINVAL;
	key = strndup(arg, (size_t)(eq - arg));
	if (!key)
		return -ENOMEM;
	v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!v)
		v = tool_json_str(eq + 1);
	json_object_set_new(params, key, v);
	free(key);
	return 0;
}

static int ctl_connect(const char *cmd, const char *path, int *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		tool_error(cmd, "socket path '%s' is too long", path);
		return CTL_EXIT_CONNECT;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		tool_error(cmd, "cannot connect to '%s': %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CTL_EXIT_CONNECT;
	}
	*out = fd;
	return 0;
}

/* Reads one JSON text (the reply) from @fd. */
static json_t *ctl_read_reply(int fd)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	json_t *v = NULL;

	for (;;) {
		json_error_t je;
		ssize_t n;

		if (cap - len < 4096) {
			char *b = realloc(buf, cap ? cap * 2 : 8192);

			if (!b)
				break;
			buf = b;
			cap = cap ? cap * 2 : 8192;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		v = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &je);
		if (v || json_error_code(&je) != json_error_premature_end_of_input)
			break;
	}
	free(buf);
	return v;
}

int cmd_ctl(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "pretty", no_argument,       NULL, 'p' },
		{ "help",   no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "ctl", *path = getenv("DISKSTACK_CONTROL");
	bool pretty = false;
	json_t *params = NULL, *req = NULL, *reply = NULL, *err;
	char *text = NULL;
	int opt, fd = -1, ret;

	opterr = 0;
	optind = 1;
	/* "+": options stop at METHOD, so values may start with '-'. */
	while ((opt = getopt_long(argc, argv, "+:S:ph", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S':
			path = optarg;
			break;
		case 'p':
			pretty = true;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd, opt, argv);
		}
	}
	if (optind >= argc)
		return tool_usage_error(cmd, "missing METHOD");
	if (!path || !*path)
		return tool_usage_error(cmd, "no socket: give -S PATH or set DISKSTACK_CONTROL");
	params = json_object();
	if (!params)
		return tool_error(cmd, "out of memory");
	for (int i = optind + 1; i < argc; i++) {
		if (ctl_add_param(params, argv[i]) < 0) {
			json_decref(params);
			return tool_usage_error(cmd, "parameters are KEY=VALUE, got '%s'", argv[i]);
		}
	}
	req = json_pack("{s:s, s:i, s:o, s:o}", "jsonrpc", "2.0", "id", 1, "method",
			tool_json_str(argv[optind]), "params", params);
	text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (!text) {
		ret = tool_error(cmd, "out of memory");
		goto out;
	}
	if ((ret = ctl_connect(cmd, path, &fd)) != 0)
		goto out;
	for (size_t off = 0, len = strlen(text); off < len;) {
		ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = tool_error(cmd, "cannot send to '%s': %s", path, strerror(errno));
			ret = CTL_EXIT_CONNECT;
			goto out;
		}
		off += (size_t)n;
	}
	(void)send(fd, "\n", 1, MSG_NOSIGNAL);
	reply = ctl_read_reply(fd);
	if (!json_is_object(reply)) {
		tool_error(cmd, "no valid reply from '%s'", path);
		ret = CTL_EXIT_PROTOCOL;
		goto out;
	}
	err = json_object_get(reply, "error");
	if (err) {
		json_t *data = json_object_get(err, "data");
		char *d = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

		fprintf(stderr, "diskstack ctl: %s: error %lld: %s%s%s\n", argv[optind],
			(long long)json_integer_value(json_object_get(err, "code")),
			json_string_value(json_object_get(err, "message")) ?: "?",
			d ? " " : "", d ? d : "");
		free(d);
		ret = EXIT_RUNTIME;
		goto out;
	}
	if (!json_object_get(reply, "result")) {
		tool_error(cmd, "a reply without result or error");
		ret = CTL_EXIT_PROTOCOL;
		goto out;
	}
	ret = tool_json_print(stdout, json_object_get(reply, "result"), pretty) < 0 ||
	      fflush(stdout) != 0 ? tool_error(cmd, "error writing output") : 0;
out:
	if (fd >= 0)
		close(fd);
	free(text);
	json_decref(req);
	json_decref(reply);
	return ret;
}
