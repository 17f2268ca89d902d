/* SPDX-License-Identifier: MIT */
/*
 * server.c: the control socket's thread (server.h).
 *
 * Notes on the design
 * -------------------
 * - One thread polls the listening socket, an eventfd for stop and up to
 *   CTL_MAX_CLIENTS clients. Control traffic is a few requests a second,
 *   so plain poll(2) and blocking writes are enough; a write that cannot
 *   go out within CTL_SEND_TIMEOUT_S (a client that stopped reading)
 *   drops that client.
 * - Each client has an input buffer that grows up to
 *   CTL_MAX_REQUEST_BYTES; ctl_rpc_feed takes complete JSON texts off its
 *   front, and replies go out in request order.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reactor.h"
#include "ctl/server.h"
#include "net/netsrv.h"

#define CTL_SEND_TIMEOUT_S 5

struct ctl_client {
	int fd;
	uid_t uid;
	pid_t pid;
	char *buf;
	size_t len, cap;
};

struct ctl_server {
	char *path;
	int lfd, efd;
	const struct ctl_rpc *rpc;
	pthread_t thread;
	bool started;
	struct ctl_client clients[CTL_MAX_CLIENTS];
	unsigned nclients;
};

int ctl_server_new(const char *path, const struct ctl_rpc *rpc, struct ctl_server **out,
		   char *err, size_t errlen)
{
	struct ctl_server *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	s->lfd = s->efd = -1;
	s->rpc = rpc;
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	}
	ret = netsrv_unix_listen_socket(path, &s->lfd, err, errlen);
	if (ret < 0) {
		free(s->path);
		free(s);
		return ret;
	}
	if (chmod(path, 0600) < 0) {
		ret = -errno;
		errbuf_fail(err, errlen, ret, "chmod 0600 '%s': %s", path, strerror(errno));
		goto fail;
	}
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0) {
		ret = -errno;
		errbuf_fail(err, errlen, ret, "eventfd: %s", strerror(errno));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	ctl_server_free(s);
	return ret;
}

static void client_drop(struct ctl_server *s, unsigned i)
{
	close(s->clients[i].fd);
	free(s->clients[i].buf);
	s->clients[i] = s->clients[--s->nclients];
}

/* Sends all of @text; false if the client is gone or too slow. */
static bool client_send(struct ctl_client *c, const char *text)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

static bool client_send_json(struct ctl_client *c, json_t *reply)
{
	char *text = ctl_rpc_dump(reply);
	bool ok = text && client_send(c, text);

	free(text);
	return ok;
}

static void ctl_accept(struct ctl_server *s)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	struct timeval tv = { .tv_sec = CTL_SEND_TIMEOUT_S };
	struct ctl_client c = { 0 };
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c.fd = fd;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    (cr.uid != 0 && cr.uid != geteuid())) {
		json_t *r = json_pack("{s:s, s:{s:i, s:s}, s:n}", "jsonrpc", "2.0", "error", "code",
				      CTL_ERR_PERMISSION, "message",
				      ctl_error_message(CTL_ERR_PERMISSION), "id");

		log_warn("ctl: refused a client with uid %ld (pid %ld)", (long)cr.uid, (long)cr.pid);
		if (r)
			client_send_json(&c, r);
		json_decref(r);
		close(fd);
		return;
	}
	if (s->nclients == CTL_MAX_CLIENTS) {
		log_warn("ctl: more than %u clients: refusing one", CTL_MAX_CLIENTS);
		close(fd);
		return;
	}
	c.uid = cr.uid;
	c.pid = cr.pid;
	s->clients[s->nclients++] = c;
}

/* Reads what client @i sent and answers every complete request. Returns
 * false when the client is to be dropped. */
static bool ctl_client_input(struct ctl_server *s, unsigned i)
{
	struct ctl_client *c = &s->clients[i];
	ssize_t n;

	if (c->cap - c->len < 4096) {
		size_t cap = c->cap ? c->cap * 2 : 8192;
		char *b;

		if (cap > CTL_MAX_REQUEST_BYTES + 8192)
			cap = CTL_MAX_REQUEST_BYTES + 8192;
		if (cap <= c->len)
			return false;
		b = realloc(c->buf, cap);
		if (!b)
			return false;
		c->buf = b;
		c->cap = cap;
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	c->len += (size_t)n;
	for (;;) {
		struct ctl_call proto = { .ctx = s->rpc->ctx, .uid = c->uid, .pid = c->pid };
		size_t used;
		json_t *reply;
		enum ctl_feed f = ctl_rpc_feed(s->rpc, &proto, c->buf, c->len, &used, &reply);
		bool ok = true;

		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (f == CTL_FEED_NEED_MORE)
			return c->len < CTL_MAX_REQUEST_BYTES;
		if (reply)
			ok = client_send_json(c, reply);
		json_decref(reply);
		if (f == CTL_FEED_CLOSE || !ok)
			return false;
	}
}

static void *ctl_thread(void *arg)
{
	struct ctl_server *s = arg;
	struct reactor *r = NULL;
	int ret = reactor_new(&r, 0);

	if (ret < 0)
		log_warn("ctl: no reactor on the control thread (%s): flush and resize "
			 "methods will fail", strerror(-ret));
	for (;;) {
		struct pollfd p[CTL_MAX_CLIENTS + 2];
		unsigned n = s->nclients;

		p[0] = (struct pollfd){ .fd = s->efd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (unsigned i = 0; i < n; i++)
			p[2 + i] = (struct pollfd){ .fd = s->clients[i].fd, .events = POLLIN };
		if (poll(p, n + 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("ctl: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		/* Clients first, from the last, so that drops do not move the
		 * ones still to be looked at. */
		for (unsigned i = n; i-- > 0;)
			if (p[2 + i].revents && !ctl_client_input(s, i))
				client_drop(s, i);
		if (p[1].revents & POLLIN)
			ctl_accept(s);
	}
	while (s->nclients)
		client_drop(s, s->nclients - 1);
	reactor_free(r);
	return NULL;
}

int ctl_server_start(struct ctl_server *s)
{
	int ret = pthread_create(&s->thread, NULL, ctl_thread, s);

	if (ret != 0)
		return -ret;
	s->started = true;
	return 0;
}

void ctl_server_stop(struct ctl_server *s)
{
	uint64_t one = 1;

	if (!s || !s->started)
		return;
	if (write(s->efd, &one, sizeof(one)) < 0)
		log_warn("ctl: cannot wake the control thread: %s", strerror(errno));
	pthread_join(s->thread, NULL);
	s->started = false;
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	ctl_server_stop(s);
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->path);
	}
	if (s->efd >= 0)
		close(s->efd);
	free(s->path);
	free(s);
}
