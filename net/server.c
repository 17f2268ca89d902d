/* SPDX-License-Identifier: MIT */
/*
 * server.c: the socket engine's threads, listeners, acceptor, limits and
 * shutdown (netsrv.h). Connections themselves live in conn.c; what they
 * say is the protocol's (struct netsrv_proto).
 *
 * Notes on the design
 * -------------------
 * - Threads. The thread that calls netsrv_run is the acceptor: its reactor
 *   (the "main" reactor) holds one accept per listening socket. N worker
 *   threads (default: one per online CPU) each run a reactor. A new socket
 *   is wrapped in a connection object on the acceptor and handed to the
 *   worker with the fewest live connections (ties round-robin) through
 *   reactor_post; from then on every byte of it, every request its
 *   protocol makes and every timer it arms run on that worker, so a
 *   connection needs no lock.
 * - Shared state: listeners and options are immutable after netsrv_start;
 *   per-worker connection counts and the stop flags are atomics;
 *   everything else belongs to one thread.
 * - Shutdown (netsrv_stop, any thread): the acceptor cancels its accepts
 *   and closes the listeners, then posts "stop" to every worker. A worker
 *   hands each connection to its protocol's drain and arms a drain timer
 *   after which stragglers are dropped. A worker with no connections left
 *   posts "done" to the acceptor and stops its loop; when all have,
 *   netsrv_run joins them and returns (the caller then flushes whatever
 *   its protocols wrote to).
 * - Limits: at most opts.max_connections connections live at once (a
 *   server-wide atomic count: the acceptor adds, a worker subtracts when
 *   it frees one); beyond that the acceptor accepts and closes at once, so
 *   a client learns at once rather than hanging in the backlog, and a
 *   flood of idle sockets costs one descriptor for an instant each. The
 *   handshake deadline (conn.c) keeps idle sockets from holding the slots
 *   for long.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "net/netsrv-internal.h"
#include "net/tls.h"

/* Back-off after accept fails for lack of descriptors or memory. */
#define ACCEPT_RETRY_NS (100ull * 1000000ull)

/* ---- creation ------------------------------------------------------------- */

static void srv_stop_task(struct reactor_task *t);
static void srv_force_task(struct reactor_task *t);

int netsrv_new(const struct netsrv_opts *o, struct netsrv **out)
{
	struct netsrv *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->opts = *o;
	if (!s->opts.name)
		s->opts.name = "net";
	if (s->opts.max_connections == 0)
		s->opts.max_connections = NETSRV_DEFAULT_CONNECTIONS;
	if (s->opts.handshake_timeout_s == 0)
		s->opts.handshake_timeout_s = NETSRV_DEFAULT_HANDSHAKE_S;
	if (s->opts.handshake_timeout_s != NETSRV_NO_LIMIT)
		s->handshake_ns = (uint64_t)s->opts.handshake_timeout_s * 1000000000ull;
	s->idle_ns = (uint64_t)s->opts.idle_timeout_s * 1000000000ull;
	if (s->opts.threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		s->opts.threads = n > 0 ? (unsigned)MIN(n, 256L) : 1;
	}
	s->stdio_rfd = s->stdio_wfd = -1;
	s->stop_task.fn = srv_stop_task;
	s->force_task.fn = srv_force_task;
	atomic_init(&s->next_conn_id, 1);
	*out = s;
	return 0;
}

struct netsrv_tls *netsrv_tls_of(const struct netsrv *s)
{
	return s->opts.tls;
}

uint64_t netsrv_connections_served(const struct netsrv *s)
{
	return atomic_load(&s->next_conn_id) - 1;
}

/* ---- listeners ------------------------------------------------------------- */

static int srv_add_listener(struct netsrv *s, const struct netsrv_proto *p, int fd, bool is_tcp,
			    const char *desc, const char *unix_path)
{
	struct netsrv_listener *v = realloc(s->listeners, (s->nlisteners + 1) * sizeof(*v));
	struct netsrv_listener *l;

	if (!v)
		return -ENOMEM;
	s->listeners = v;
	l = &s->listeners[s->nlisteners];
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->proto = p;
	l->is_tcp = is_tcp;
	snprintf(l->desc, sizeof(l->desc), "%s", desc);
	if (unix_path) {
		l->unix_path = strdup(unix_path);
		if (!l->unix_path)
			return -ENOMEM;
	}
	s->nlisteners++;
	return 0;
}

void netsrv_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
		break;
	}
	case AF_UNIX:
		snprintf(buf, len, "unix");
		break;
	default:
		snprintf(buf, len, "family %d", sa->sa_family);
		break;
	}
}

int netsrv_listen_tcp(struct netsrv *s, const struct netsrv_proto *p, const char *host,
		      uint16_t port, uint16_t *bound, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	char portstr[16];
	int n = 0, ret, last_err = 0;
	uint16_t use_port = port;

	if (!host)
		host = "127.0.0.1";
	snprintf(portstr, sizeof(portstr), "%u", port);
	ret = getaddrinfo(host, portstr, &hints, &res);
	if (ret != 0)
		return errbuf_fail(err, errlen, -EINVAL, "cannot resolve '%s': %s", host,
				   gai_strerror(ret));
	for (ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char desc[128];
		int one = 1, fd;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last_err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		/* With port 0, every address shares the port the first got. */
		if (use_port != port) {
			if (ai->ai_family == AF_INET)
				((struct sockaddr_in *)(void *)ai->ai_addr)->sin_port = htons(use_port);
			else
				((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_port = htons(use_port);
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			last_err = errno;
			close(fd);
			continue;
		}
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			netsrv_format_addr((struct sockaddr *)&ss, desc, sizeof(desc));
			use_port = ntohs(ss.ss_family == AF_INET
					 ? ((struct sockaddr_in *)&ss)->sin_port
					 : ((struct sockaddr_in6 *)&ss)->sin6_port);
		} else {
			snprintf(desc, sizeof(desc), "%s:%u", host, use_port);
		}
		ret = srv_add_listener(s, p, fd, true, desc, NULL);
		if (ret < 0) {
			close(fd);
			freeaddrinfo(res);
			return errbuf_fail(err, errlen, ret, "out of memory");
		}
		n++;
	}
	freeaddrinfo(res);
	if (n == 0)
		return errbuf_fail(err, errlen, last_err ? -last_err : -EADDRNOTAVAIL,
				   "cannot listen on %s port %u: %s", host, port,
				   strerror(last_err ? last_err : EADDRNOTAVAIL));
	if (bound)
		*bound = use_port;
	return 0;
}

/* Whether something listens on the Unix socket at @sun: 0 = nobody (a
 * stale file: the connection was refused, or the file is gone), 1 = a live
 * listener answered (or its backlog is full), -errno = cannot tell. */
static int srv_unix_probe(const struct sockaddr_un *sun)
{
	CLEANUP_CLOSE int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0)
		return 1;
	if (errno == ECONNREFUSED || errno == ENOENT)
		return 0;
	if (errno == EAGAIN)
		return 1;
	return -errno;
}

int netsrv_unix_listen_socket(const char *path, int *out, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	if (strlen(path) >= sizeof(sun.sun_path))
		return errbuf_fail(err, errlen, -ENAMETOOLONG, "socket path '%s' is too long (max %zu)",
				   path, sizeof(sun.sun_path) - 1);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return errbuf_fail(err, errlen, -EEXIST,
					   "'%s' exists and is not a socket", path);
		/* Replace only a stale socket: unlinking one a live server
		 * listens on would cut that server off from new clients
		 * without it noticing. */
		ret = srv_unix_probe(&sun);
		if (ret > 0)
			return errbuf_fail(err, errlen, -EADDRINUSE,
					   "a server is already listening on '%s'; stop it or use "
					   "another path", path);
		if (ret < 0)
			return errbuf_fail(err, errlen, ret, "cannot tell whether '%s' is in use: %s",
					   path, strerror(-ret));
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errbuf_fail(err, errlen, -errno, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, SOMAXCONN) < 0) {
		ret = -errno;
		close(fd);
		return errbuf_fail(err, errlen, ret, "cannot listen on '%s': %s", path, strerror(-ret));
	}
	*out = fd;
	return 0;
}

int netsrv_listen_unix(struct netsrv *s, const struct netsrv_proto *p, const char *path,
		       char *err, size_t errlen)
{
	char desc[128];
	int fd, ret;

	if ((ret = netsrv_unix_listen_socket(path, &fd, err, errlen)) < 0)
		return ret;
	snprintf(desc, sizeof(desc), "unix:%s", path);
	ret = srv_add_listener(s, p, fd, false, desc, path);
	if (ret < 0) {
		close(fd);
		unlink(path);
		return errbuf_fail(err, errlen, ret, "out of memory");
	}
	return 0;
}

int netsrv_listen_fd(struct netsrv *s, const struct netsrv_proto *p, int fd, char *err,
		     size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int acc = 0, ret;
	socklen_t al = sizeof(acc);
	char desc[128];

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc)
		return errbuf_fail(err, errlen, -ENOTSOCK, "fd %d is not a listening socket", fd);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return errbuf_fail(err, errlen, -errno, "fcntl: %s", strerror(errno));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		netsrv_format_addr((struct sockaddr *)&ss, desc, sizeof(desc));
	else
		snprintf(desc, sizeof(desc), "fd %d", fd);
	ret = srv_add_listener(s, p, fd, ss.ss_family == AF_INET || ss.ss_family == AF_INET6,
			       desc, NULL);
	return ret < 0 ? errbuf_fail(err, errlen, ret, "out of memory") : 0;
}

int netsrv_serve_fds(struct netsrv *s, const struct netsrv_proto *p, int rfd, int wfd)
{
	if (s->stdio)
		return -EBUSY;
	s->stdio = true;
	s->stdio_proto = p;
	s->stdio_rfd = rfd;
	s->stdio_wfd = wfd;
	return 0;
}

/* ---- address helpers for tools ----------------------------------------------- */

int netsrv_activation_fds(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	unsigned long p, n;
	char *end;

	if (!pid || !fds)
		return 0;
	errno = 0;
	p = strtoul(pid, &end, 10);
	if (errno || end == pid || *end || p == 0 || p > INT_MAX || (pid_t)p != getpid())
		return 0;
	errno = 0;
	n = strtoul(fds, &end, 10);
	if (errno || end == fds || *end || n < 1 || n > 1024)
		return -EINVAL;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return (int)n;
}

int netsrv_private_unix_path(const char *prefix, char *dir, size_t dirlen, char *path,
			     size_t pathlen)
{
	const char *tmp = getenv("TMPDIR");
	int n;

	/* A long $TMPDIR would leave no room in sun_path (108 bytes). */
	if (!tmp || !*tmp || strlen(tmp) >= 32)
		tmp = "/tmp";
	n = snprintf(dir, dirlen, "%s/%s.XXXXXX", tmp, prefix);
	if (n < 0 || (size_t)n >= dirlen)
		return -ENAMETOOLONG;
	if (!mkdtemp(dir)) {
		int ret = -errno;

		dir[0] = '\0';
		return ret;
	}
	n = snprintf(path, pathlen, "%s/socket", dir);
	if (n < 0 || (size_t)n >= pathlen) {
		rmdir(dir);
		dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

void netsrv_client_host(const char *host, char *out, size_t len)
{
	if (!host || strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]", host);
	else
		snprintf(out, len, "%s", host);
}

/* ---- workers ------------------------------------------------------------------ */

struct worker_start {
	pthread_mutex_t lock;        /* protects ready and failed */
	pthread_cond_t cond;
	unsigned ready, failed;
};

struct worker_arg {
	struct netsrv_worker *w;
	struct worker_start *start;
};

static void worker_done_task_fn(struct reactor_task *t)
{
	struct netsrv_worker *w = container_of(t, struct netsrv_worker, done_task);
	struct netsrv *s = w->srv;

	if (atomic_fetch_add(&s->workers_done, 1) + 1 == s->nworkers)
		s->run_done = true;
}

/* A stopping worker with no connections left tells the acceptor and ends
 * its loop. */
static void worker_check_done(struct netsrv_worker *w)
{
	if (!w->stopping || w->conns || w->done_posted)
		return;
	w->done_posted = true;
	reactor_timer_cancel(w->r, &w->drain_timer);
	w->done_task.fn = worker_done_task_fn;
	reactor_post(w->srv->main_r, &w->done_task);
	reactor_stop(w->r);
}

void netsrv_worker_conn_gone(struct netsrv_worker *w, bool stdio)
{
	atomic_fetch_sub(&w->nconns, 1);
	atomic_fetch_sub(&w->srv->nconns, 1);
	if (stdio)
		netsrv_stop(w->srv);
	worker_check_done(w);
}

static void worker_force_all(struct netsrv_worker *w)
{
	struct netsrv_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		netsrv_conn_close(c, false, "dropped at shutdown");
	}
}

static void worker_drain_timeout(struct reactor_timer *t)
{
	struct netsrv_worker *w = container_of(t, struct netsrv_worker, drain_timer);

	if (w->conns)
		log_warn("%s: connections still open %llu s after shutdown began: dropping them",
			 w->srv->opts.name, (unsigned long long)(NETSRV_DRAIN_TIMEOUT_NS / 1000000000ull));
	worker_force_all(w);
}

static void worker_stop_task(struct reactor_task *t)
{
	struct netsrv_worker *w = container_of(t, struct netsrv_worker, stop_task);
	struct netsrv_conn *c, *next;

	w->stopping = true;
	for (c = w->conns; c; c = next) {
		next = c->next;
		netsrv_conn_drain(c);
	}
	if (w->conns) {
		w->drain_timer.fn = worker_drain_timeout;
		reactor_timer_start(w->r, &w->drain_timer, NETSRV_DRAIN_TIMEOUT_NS);
	}
	worker_check_done(w);
}

static void worker_force_task(struct reactor_task *t)
{
	struct netsrv_worker *w = container_of(t, struct netsrv_worker, force_task);

	worker_force_all(w);
}

static void *worker_main(void *arg)
{
	struct worker_arg *a = arg;
	struct netsrv_worker *w = a->w;
	struct worker_start *st = a->start;
	struct reactor *r;
	int ret;

	free(a);
	ret = reactor_new(&r, 1024);
	pthread_mutex_lock(&st->lock);
	if (ret < 0) {
		st->failed++;
		log_error("%s: worker %u: cannot create its reactor: %s", w->srv->opts.name, w->index, strerror(-ret));
	} else {
		w->r = r;
		st->ready++;
	}
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	if (ret < 0)
		return NULL;
	ret = reactor_run(r);
	if (ret < 0)
		log_error("%s: worker %u: reactor failed: %s", w->srv->opts.name, w->index, strerror(-ret));
	/* Let anything still completing (a cancelled op, a deferred task)
	 * finish before the ring goes away. */
	for (unsigned i = 0; i < 10000 && reactor_pending(r) > 0; i++)
		if (reactor_run_once(r, true) < 0)
			break;
	reactor_free(r);
	return NULL;
}

int netsrv_start(struct netsrv *s)
{
	struct worker_start st = { .ready = 0, .failed = 0 };
	unsigned n = s->opts.threads;
	int ret = 0;

	s->main_r = reactor_current();
	if (!s->main_r)
		return -EINVAL;
	s->workers = calloc(n, sizeof(*s->workers));
	if (!s->workers)
		return -ENOMEM;
	pthread_mutex_init(&st.lock, NULL);
	pthread_cond_init(&st.cond, NULL);
	for (unsigned i = 0; i < n; i++) {
		struct netsrv_worker *w = &s->workers[i];
		struct worker_arg *a = malloc(sizeof(*a));

		w->srv = s;
		w->index = i;
		w->stop_task.fn = worker_stop_task;
		w->force_task.fn = worker_force_task;
		atomic_init(&w->nconns, 0);
		if (!a) {
			ret = -ENOMEM;
			break;
		}
		a->w = w;
		a->start = &st;
		if (pthread_create(&w->thread, NULL, worker_main, a) != 0) {
			free(a);
			ret = -EAGAIN;
			break;
		}
		w->started = true;
		s->nworkers++;
	}
	pthread_mutex_lock(&st.lock);
	while (st.ready + st.failed < s->nworkers)
		pthread_cond_wait(&st.cond, &st.lock);
	pthread_mutex_unlock(&st.lock);
	pthread_mutex_destroy(&st.lock);
	pthread_cond_destroy(&st.cond);
	if (ret == 0 && st.failed)
		ret = -ENOMEM;
	if (ret < 0) {
		for (unsigned i = 0; i < s->nworkers; i++)
			if (s->workers[i].r)
				reactor_stop(s->workers[i].r);
		for (unsigned i = 0; i < s->nworkers; i++)
			pthread_join(s->workers[i].thread, NULL);
		s->nworkers = 0;
		return ret;
	}
	return 0;
}

static struct netsrv_worker *srv_pick_worker(struct netsrv *s)
{
	unsigned start = atomic_fetch_add(&s->rr, 1), best = start % s->nworkers;
	unsigned best_n = atomic_load(&s->workers[best].nconns);

	for (unsigned k = 1; k < s->nworkers; k++) {
		unsigned i = (start + k) % s->nworkers;
		unsigned n = atomic_load(&s->workers[i].nconns);

		if (n < best_n) {
			best = i;
			best_n = n;
		}
	}
	return &s->workers[best];
}

/* Hands a new connection to a worker. */
static void srv_dispatch(struct netsrv *s, struct netsrv_conn *c)
{
	struct netsrv_worker *w = srv_pick_worker(s);

	c->w = w;
	c->r = w->r;
	atomic_fetch_add(&w->nconns, 1);
	atomic_fetch_add(&s->nconns, 1);
	c->start_task.fn = netsrv_conn_start;
	reactor_post(w->r, &c->start_task);
}

/* ---- acceptor ----------------------------------------------------------------- */

static void listener_arm(struct netsrv_listener *l);

static void listener_retry_timer(struct reactor_timer *t);

struct listener_retry {
	struct reactor_timer timer;
	struct netsrv_listener *l;
};

static void listener_close(struct netsrv_listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
}

static void listener_accept_cb(struct reactor_op *op, int res)
{
	struct netsrv_listener *l = container_of(op, struct netsrv_listener, op);
	struct netsrv *s = l->srv;
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	struct netsrv_conn *c;

	l->armed = false;
	if (s->accepting_stopped) {
		if (res >= 0)
			close(res);
		listener_close(l);
		return;
	}
	if (res < 0) {
		if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
			struct listener_retry *lr = calloc(1, sizeof(*lr));

			log_warn("%s: accept on %s: %s; retrying", s->opts.name, l->desc, strerror(-res));
			if (lr) {
				lr->l = l;
				lr->timer.fn = listener_retry_timer;
				reactor_timer_start(s->main_r, &lr->timer, ACCEPT_RETRY_NS);
				l->armed = true;  /* the timer re-arms it */
				return;
			}
		} else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED &&
			   res != -ECANCELED) {
			log_warn("%s: accept on %s: %s", s->opts.name, l->desc, strerror(-res));
		}
		listener_arm(l);
		return;
	}
	if (atomic_load(&s->nconns) >= s->opts.max_connections) {
		/* Accept and close: the client sees the end of the stream
		 * at once instead of waiting in the backlog. One log line per
		 * stretch at the limit, so a flood cannot fill the log. */
		s->nrefused++;
		if (!s->refusing)
			log_warn("%s: %u connections open: refusing new ones on %s "
				 "(--max-connections)", s->opts.name, s->opts.max_connections, l->desc);
		s->refusing = true;
		close(res);
		listener_arm(l);
		return;
	}
	if (s->refusing) {
		log_info("%s: accepting connections again (%llu refused)", s->opts.name,
			 (unsigned long long)s->nrefused);
		s->refusing = false;
	}
	if (getpeername(res, (struct sockaddr *)&peer, &pl) < 0)
		pl = 0;
	if (l->is_tcp) {
		int one = 1;

		setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		/* Unix sockets do not autotune: with the default ~208 KiB a
		 * 1 MiB reply goes out in pieces, one wake-up each (figures:
		 * docs/bench-nbd.md, "Unix socket send buffer"). Capped by
		 * net.core.wmem_max (212992 on a stock Debian). Not forced past
		 * that with SO_SNDBUFFORCE: the cap is the administrator's, and
		 * forcing it gained nothing beyond noise (the same page). */
		int sz = NETSRV_UNIX_SNDBUF;

		setsockopt(res, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	c = netsrv_conn_new(s, l->proto, res, res, pl ? (struct sockaddr *)&peer : NULL, pl);
	if (!c) {
		log_warn("%s: out of memory accepting a connection on %s", s->opts.name, l->desc);
		close(res);
	} else {
		srv_dispatch(s, c);
	}
	listener_arm(l);
}

static void listener_retry_timer(struct reactor_timer *t)
{
	struct listener_retry *lr = container_of(t, struct listener_retry, timer);
	struct netsrv_listener *l = lr->l;

	free(lr);
	l->armed = false;
	if (l->srv->accepting_stopped) {
		listener_close(l);
		return;
	}
	listener_arm(l);
}

static void listener_arm(struct netsrv_listener *l)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(l->srv->main_r);

	io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	reactor_sqe_set_op(sqe, &l->op);
	l->armed = true;
}

static void listener_cancel_cb(struct reactor_op *op UNUSED, int res UNUSED)
{
}

static void srv_stop_task(struct reactor_task *t)
{
	struct netsrv *s = container_of(t, struct netsrv, stop_task);

	log_info("%s: shutting down: draining connections", s->opts.name);
	s->accepting_stopped = true;
	for (unsigned i = 0; i < s->nlisteners; i++) {
		struct netsrv_listener *l = &s->listeners[i];

		if (l->armed && l->fd >= 0) {
			struct io_uring_sqe *sqe = reactor_get_sqe(s->main_r);

			io_uring_prep_cancel(sqe, &l->op, 0);
			l->cancel_op.cb = listener_cancel_cb;
			reactor_sqe_set_op(sqe, &l->cancel_op);
		} else if (!l->armed) {
			listener_close(l);
		}
	}
	for (unsigned i = 0; i < s->nworkers; i++)
		reactor_post(s->workers[i].r, &s->workers[i].stop_task);
}

static void srv_force_task(struct reactor_task *t)
{
	struct netsrv *s = container_of(t, struct netsrv, force_task);

	log_warn("%s: second stop request: dropping every connection", s->opts.name);
	for (unsigned i = 0; i < s->nworkers; i++)
		reactor_post(s->workers[i].r, &s->workers[i].force_task);
}

void netsrv_stop(struct netsrv *s)
{
	if (!s->main_r)
		return;
	if (!atomic_exchange(&s->stop_requested, true)) {
		reactor_post(s->main_r, &s->stop_task);
		return;
	}
	if (!atomic_exchange(&s->force_requested, true))
		reactor_post(s->main_r, &s->force_task);
}

int netsrv_run(struct netsrv *s)
{
	int status = 0;

	assert(s->main_r && s->main_r == reactor_current());
	for (unsigned i = 0; i < s->nlisteners; i++) {
		s->listeners[i].srv = s;
		s->listeners[i].op.cb = listener_accept_cb;
		listener_arm(&s->listeners[i]);
		log_info("%s: listening on %s", s->opts.name, s->listeners[i].desc);
	}
	if (s->stdio) {
		struct netsrv_conn *c = netsrv_conn_new(s, s->stdio_proto, s->stdio_rfd, s->stdio_wfd,
							 NULL, 0);

		if (!c) {
			log_error("%s: out of memory", s->opts.name);
			return 1;
		}
		c->stdio = true;
		s->stdio_rfd = s->stdio_wfd = -1;
		srv_dispatch(s, c);
	}
	while (!s->run_done) {
		int ret = reactor_run_once(s->main_r, true);

		if (ret < 0) {
			log_error("%s: acceptor reactor failed: %s", s->opts.name, strerror(-ret));
			status = 1;
			break;
		}
	}
	/* Wait for cancelled accepts to come back before closing. */
	for (unsigned tries = 0; tries < 10000; tries++) {
		bool armed = false;

		for (unsigned i = 0; i < s->nlisteners; i++)
			armed = armed || s->listeners[i].armed;
		if (!armed)
			break;
		if (reactor_run_once(s->main_r, true) < 0)
			break;
	}
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i].thread, NULL);
	s->nworkers = 0;
	log_info("%s: stopped after %llu connections (%llu refused over the limit)", s->opts.name,
		 (unsigned long long)netsrv_connections_served(s), (unsigned long long)s->nrefused);
	return status;
}

void netsrv_free(struct netsrv *s)
{
	if (!s)
		return;
	/* Threads started but never run (netsrv_run not called). */
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (s->workers[i].r)
			reactor_stop(s->workers[i].r);
	}
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i].thread, NULL);
	free(s->workers);
	for (unsigned i = 0; i < s->nlisteners; i++) {
		struct netsrv_listener *l = &s->listeners[i];

		listener_close(l);
		if (l->unix_path) {
			unlink(l->unix_path);
			free(l->unix_path);
		}
	}
	free(s->listeners);
	if (s->stdio_rfd >= 0)
		close(s->stdio_rfd);
	if (s->stdio_wfd >= 0 && s->stdio_wfd != s->stdio_rfd)
		close(s->stdio_wfd);
	netsrv_tls_free(s->opts.tls);
	free(s);
}
