/* SPDX-License-Identifier: MIT */
/*
 * cmd-serve.c: `diskstack serve` — serves disk specs over NBD: the NBD
 * protocol (nbd/) on the socket engine (net/).
 *
 * Notes on the design
 * -------------------
 * - Everything that can be checked is checked before anything is opened:
 *   options, every spec's syntax, listener combinations. Then the disks
 *   are opened on the main thread (which keeps a reactor for them and for
 *   the acceptor), TLS credentials loaded, sockets bound, threads started,
 *   the pid file written, and the --run command started: the pid file
 *   appears only once clients can connect.
 * - Signals: SIGINT, SIGTERM, SIGHUP and SIGCHLD are blocked in every
 *   thread and taken by a small signal thread with sigwaitinfo; it calls
 *   netsrv_stop (thread-safe) and reaps the --run child. SIGPIPE is
 *   ignored (pipes in --stdio mode). The child of --run gets the original
 *   signal mask back.
 * - Socket activation follows systemd (netsrv_activation_fds): LISTEN_PID
 *   must be our pid and LISTEN_FDS gives the count of listening sockets
 *   from fd 3.
 * - The engine stops when the last connection of -s ends, or when --run's
 *   command exits; then the exports are flushed (nbdsrv_flush).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "nbd/proto.h"
#include "nbd/server.h"
#include "net/netsrv.h"
#include "net/tls.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/serve-ctl.h"
#include "tools/serve-iscsi.h"
#include "tools/serve-nvmf.h"
#include "tools/serve-vhost.h"
#include "tools/tool.h"

#define SERVE_MAX_EXPORTS 1024

static void serve_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack serve [OPTIONS] [SPEC]\n"
		"\n"
		"Serves disks over NBD. SPEC is the default export \"\"; --export adds named\n"
		"ones. Runs in the foreground; SIGINT/SIGTERM finish the requests in flight,\n"
		"flush every export and exit.\n"
		"\n"
		"Exports:\n"
		"  -e, --export NAME=SPEC   serve SPEC as export NAME (repeatable; NAME may be empty)\n"
		"  -D, --description TEXT   description of the export given just before\n"
		"  -r, --read-only          serve every export read-only\n"
		"\n"
		"Listening (default: TCP 127.0.0.1:10809):\n"
		"  -p, --port PORT          TCP port (0 = any free port, printed)\n"
		"  -i, --ip ADDR            TCP address or host name (\"::1\", \"0.0.0.0\", ...)\n"
		"  -U, --unix PATH          Unix socket; '-' = a private one in a temporary directory\n"
		"                           (TCP too only if -p or -i is also given)\n"
		"  -s, --stdio              serve one connection on stdin/stdout, then exit\n"
		"      --run CMD            run CMD (sh -c) with $uri, $unixsocket, $port and\n"
		"                           $exportname set; stop when it exits, with its status\n"
		"  -P, --pidfile FILE       write the pid to FILE once clients can connect\n"
		"      --control PATH       JSON-RPC control socket (docs/ctl.md, diskstack ctl);\n"
		"                           '-' = 'control' next to the private -U - socket;\n"
		"                           --run gets it as $DISKSTACK_CONTROL\n"
		"  systemd socket activation (LISTEN_PID/LISTEN_FDS) is used when present.\n"
		"\n"
		"TLS:\n"
		"      --tls off|on|require TLS mode (default: on when credentials are given)\n"
		"      --tls-certificates DIR  X.509: DIR/server-cert.pem, server-key.pem, ca-cert.pem\n"
		"      --tls-psk FILE       pre-shared keys, psktool format (identity:hexkey)\n"
		"      --tls-verify-peer    require client certificates signed by DIR/ca-cert.pem\n"
		"\n"
		SERVE_ISCSI_USAGE
		SERVE_NVMF_USAGE
		SERVE_VHOST_USAGE
		"Limits:\n"
		"      --max-connections N  connections at once (default 100, 0 = no limit);\n"
		"                           more are accepted and closed at once\n"
		"      --handshake-timeout SECONDS\n"
		"                           time a client gets to finish the handshake\n"
		"                           (default 30, 0 = no limit)\n"
		"      --idle-timeout SECONDS\n"
		"                           close a connection idle that long in transmission\n"
		"                           (default 0 = never: kernel and QEMU clients idle\n"
		"                           for hours)\n"
		"\n"
		"Tuning:\n"
		"  -t, --threads N          reactor threads (default: one per online CPU)\n"
		"      --max-requests N     in-flight requests per connection (default 128)\n"
		"  -v, --verbose            debug messages\n"
		"  -h, --help               show this help\n"
		"\n"
		"Examples:\n"
		"  diskstack serve mem:1G\n"
		"  diskstack serve -U /tmp/nbd.sock memdiff:file:golden.raw\n"
		"  diskstack serve -U - mem:1G --run 'nbdinfo \"$uri\"'\n"
		"See docs/diskstack-serve.md and 'diskstack help specs'.\n");
}

struct serve_export {
	const char *name;
	const char *spec_text;
	const char *description;
	struct spec *spec;
};

/* State the signal thread shares with the main thread. */
static struct {
	struct netsrv *net;
	pid_t child;                 /* --run child, 0 = none */
	atomic_int child_status;     /* exit status to return, -1 = still running */
	atomic_bool exiting;
	/* SERVE_OPENING: a stop signal ends the process (nothing served yet);
	 * SERVE_STARTING: it is remembered in stop_pending; SERVE_RUNNING: it
	 * drains the server (a second one forces). stop_sent: netsrv_stop was
	 * called. Every netsrv_stop call is made on the signal thread. */
	atomic_int phase;
	atomic_bool stop_pending;
	atomic_bool stop_sent;
	sigset_t set;
} sv;

enum { SERVE_OPENING, SERVE_STARTING, SERVE_RUNNING };

/* Asks the server to stop: the first call drains, a later one forces the
 * remaining connections closed. Called on the signal thread only. */
static void serve_stop(void)
{
	atomic_store(&sv.stop_sent, true);
	netsrv_stop(sv.net);
}

static void *serve_signal_thread(void *arg UNUSED)
{
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&sv.set, &si);

		if (sig < 0)
			continue;
		if (atomic_load(&sv.exiting))
			return NULL;
		if (sig == SIGCHLD) {
			int st;

			if (sv.child > 0 && waitpid(sv.child, &st, WNOHANG) == sv.child) {
				int code = WIFEXITED(st) ? WEXITSTATUS(st)
					 : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;

				sv.child = 0;
				atomic_store(&sv.child_status, code);
				log_info("serve: --run command exited with status %d", code);
				serve_stop();
			}
			continue;
		}
		if (sig == SIGUSR1) {
			/* The main thread says the server runs now: a stop
			 * signal that came while it started takes effect. */
			if (atomic_load(&sv.phase) == SERVE_RUNNING &&
			    atomic_load(&sv.stop_pending) && !atomic_load(&sv.stop_sent))
				serve_stop();
			continue;
		}
		if (atomic_load(&sv.phase) == SERVE_OPENING) {
			/* Still opening the exports (an nbd: or blob: disk may
			 * wait minutes on an unreachable host): nothing was
			 * served, nothing acknowledged, so nothing to drain. */
			log_warn("serve: %s while opening the exports: exiting", strsignal(sig));
			_exit(128 + sig);
		}
		log_info("serve: %s received", strsignal(sig));
		/* netsrv_stop before netsrv_start does nothing: while the
		 * server starts, the signal waits for the main thread's
		 * SIGUSR1 (above). */
		if (atomic_load(&sv.phase) == SERVE_RUNNING)
			serve_stop();
		else
			atomic_store(&sv.stop_pending, true);
	}
}

/* Percent-encodes @in for a URI path or query value. */
static void uri_escape(const char *in, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

/* Splits "NAME=SPEC". */
static int parse_export_arg(const char *arg, struct serve_export *e)
{
	const char *eq = strchr(arg, '=');
	char *name;

	if (!eq)
		return -EINVAL;
	name = strndup(arg, (size_t)(eq - arg));
	if (!name)
		return -ENOMEM;
	e->name = name;
	e->spec_text = eq + 1;
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	enum {
		OPT_RUN = 256, OPT_TLS, OPT_TLS_CERTS, OPT_TLS_PSK, OPT_TLS_VERIFY, OPT_MAXREQ,
		OPT_MAXCONN, OPT_HS_TIMEOUT, OPT_IDLE_TIMEOUT,
		OPT_CONTROL,
	};
	static const struct option longopts[] = {
		{ "export",           required_argument, NULL, 'e' },
		{ "description",      required_argument, NULL, 'D' },
		{ "read-only",        no_argument,       NULL, 'r' },
		{ "port",             required_argument, NULL, 'p' },
		{ "ip",               required_argument, NULL, 'i' },
		{ "unix",             required_argument, NULL, 'U' },
		{ "stdio",            no_argument,       NULL, 's' },
		{ "run",              required_argument, NULL, OPT_RUN },
		{ "pidfile",          required_argument, NULL, 'P' },
		{ "threads",          required_argument, NULL, 't' },
		{ "max-requests",     required_argument, NULL, OPT_MAXREQ },
		{ "max-connections",  required_argument, NULL, OPT_MAXCONN },
		{ "handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT },
		{ "idle-timeout",     required_argument, NULL, OPT_IDLE_TIMEOUT },
		{ "tls",              required_argument, NULL, OPT_TLS },
		{ "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
		{ "tls-psk",          required_argument, NULL, OPT_TLS_PSK },
		{ "tls-verify-peer",  no_argument,       NULL, OPT_TLS_VERIFY },
		{ "verbose",          no_argument,       NULL, 'v' },
		{ "help",             no_argument,       NULL, 'h' },
		SERVE_ISCSI_LONGOPTS,
		SERVE_NVMF_LONGOPTS,
		SERVE_VHOST_LONGOPTS,
		{ "control",          required_argument, NULL, OPT_CONTROL },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "serve";
	struct serve_export exports[SERVE_MAX_EXPORTS];
	unsigned nexp = 0;
	bool read_only = false, use_stdio = false, tls_given = false, verify_peer = false;
	const char *ip = NULL, *unix_path = NULL, *run = NULL, *pidfile = NULL;
	const char *certs = NULL, *psk = NULL;
	/* --control (serve-ctl.c) */
	const char *control = NULL;
	struct serve_ctl *ctl = NULL;
	char ctlpath[PATH_MAX];
	enum nbdsrv_tls_mode tls_mode = NBDSRV_TLS_OFF;
	uint64_t port = NBDW_DEFAULT_PORT, threads = 0, maxreq = 0;
	/* 0 = the engine's default; NETSRV_NO_LIMIT when the user asks for none. */
	unsigned maxconn = 0, hs_timeout = 0, idle_timeout = 0;
	uint64_t v;
	bool port_given = false;
	char privdir[64] = "", privsock[128] = "", err[1024] = "";
	struct reactor *r = NULL;
	struct netsrv *net = NULL;
	struct nbdsrv *srv = NULL;
	const struct netsrv_proto *proto = NULL;
	struct netsrv_tls *tls = NULL;
	pthread_t sigthread;
	bool sigthread_started = false, pidfile_written = false, mask_set = false;
	uint16_t bound_port = 0;
	int act_fds, opt, ret = 0;
	sigset_t oldmask;
	/* iSCSI (serve-iscsi.c): NBD is served unless --iscsi is given alone. */
	static struct serve_iscsi si;
	struct disk *iscsi_disk = NULL;
	bool nbd_on = true;
	const char *iscsi_spec = NULL;
	/* vhost-user (serve-vhost.c): the positional SPEC as virtio-blk too. */
	static struct serve_vhost svh;
	struct disk *vhost_disk = NULL;
	/* NVMe/TCP (serve-nvmf.c): the positional SPEC as namespace 1. */
	static struct serve_nvmf snv;
	struct disk *nvmf_disk = NULL;

	memset(&si, 0, sizeof(si));
	memset(&svh, 0, sizeof(svh));
	memset(&snv, 0, sizeof(snv));
	memset(exports, 0, sizeof(exports));
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":e:D:rp:i:U:sP:t:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e':
			if (nexp == SERVE_MAX_EXPORTS) {
				ret = tool_usage_error(cmd, "more than %u exports", SERVE_MAX_EXPORTS);
				goto out;
			}
			if (parse_export_arg(optarg, &exports[nexp]) < 0) {
				ret = tool_usage_error(cmd, "--export wants NAME=SPEC, got '%s'", optarg);
				goto out;
			}
			nexp++;
			break;
		case 'D':
			if (nexp == 0) {
				ret = tool_usage_error(cmd, "--description must follow an --export");
				goto out;
			}
			exports[nexp - 1].description = optarg;
			break;
		case 'r':
			read_only = true;
			break;
		case 'p':
			if (tool_parse_uint(optarg, 0, 65535, &port) < 0) {
				ret = tool_usage_error(cmd, "bad port '%s'", optarg);
				goto out;
			}
			port_given = true;
			break;
		case 'i':
			ip = optarg;
			break;
		case 'U':
			unix_path = optarg;
			break;
		case 's':
			use_stdio = true;
			break;
		case OPT_RUN:
			run = optarg;
			break;
		case OPT_CONTROL:
			control = optarg;
			break;
		case 'P':
			pidfile = optarg;
			break;
		case 't':
			if (tool_parse_uint(optarg, 1, 256, &threads) < 0) {
				ret = tool_usage_error(cmd, "bad thread count '%s' (1-256)", optarg);
				goto out;
			}
			break;
		case OPT_MAXREQ:
			if (tool_parse_uint(optarg, 1, 4096, &maxreq) < 0) {
				ret = tool_usage_error(cmd, "bad --max-requests '%s' (1-4096)", optarg);
				goto out;
			}
			break;
		case OPT_MAXCONN:
			if (tool_parse_uint(optarg, 0, 1000000, &v) < 0) {
				ret = tool_usage_error(cmd, "bad --max-connections '%s' (0-1000000)",
						       optarg);
				goto out;
			}
			maxconn = v ? (unsigned)v : NETSRV_NO_LIMIT;
			break;
		case OPT_HS_TIMEOUT:
		case OPT_IDLE_TIMEOUT:
			if (tool_parse_uint(optarg, 0, 1000000, &v) < 0) {
				ret = tool_usage_error(cmd, "bad --%s '%s' (0-1000000 seconds)",
						       opt == OPT_HS_TIMEOUT ? "handshake-timeout"
									     : "idle-timeout", optarg);
				goto out;
			}
			if (opt == OPT_HS_TIMEOUT)
				hs_timeout = v ? (unsigned)v : NETSRV_NO_LIMIT;
			else
				idle_timeout = (unsigned)v;
			break;
		case OPT_TLS:
			tls_given = true;
			if (strcmp(optarg, "off") == 0)
				tls_mode = NBDSRV_TLS_OFF;
			else if (strcmp(optarg, "on") == 0)
				tls_mode = NBDSRV_TLS_ON;
			else if (strcmp(optarg, "require") == 0)
				tls_mode = NBDSRV_TLS_REQUIRE;
			else {
				ret = tool_usage_error(cmd, "--tls wants off, on or require, got '%s'",
						       optarg);
				goto out;
			}
			break;
		case OPT_TLS_CERTS:
			certs = optarg;
			break;
		case OPT_TLS_PSK:
			psk = optarg;
			break;
		case OPT_TLS_VERIFY:
			verify_peer = true;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			serve_usage(stdout);
			goto out;
		default:
			if (serve_vhost_is_opt(opt)) {
				if ((ret = serve_vhost_opt(&svh, cmd, opt, optarg)) != 0)
					goto out;
				break;
			}
			if (serve_nvmf_is_opt(opt)) {
				if ((ret = serve_nvmf_opt(&snv, cmd, opt, optarg)) != 0)
					goto out;
				break;
			}
			if (serve_iscsi_is_opt(opt)) {
				if ((ret = serve_iscsi_opt(&si, cmd, opt, optarg)) != 0)
					goto out;
				break;
			}
			ret = tool_bad_option(cmd, opt, argv);
			goto out;
		}
	}
	if (optind < argc) {
		if (argc - optind > 1) {
			ret = tool_usage_error(cmd, "too many arguments ('%s'); use --export NAME=SPEC "
					       "for more exports", argv[optind + 1]);
			goto out;
		}
		if (nexp == SERVE_MAX_EXPORTS) {
			ret = tool_usage_error(cmd, "more than %u exports", SERVE_MAX_EXPORTS);
			goto out;
		}
		memmove(&exports[1], &exports[0], nexp * sizeof(exports[0]));
		exports[0] = (struct serve_export){ .name = strdup(""), .spec_text = argv[optind] };
		if (!exports[0].name) {
			ret = tool_error(cmd, "out of memory");
			nexp++;
			goto out;
		}
		nexp++;
	}
	if (si.listen || snv.listen)
		nbd_on = nexp > (optind < argc ? 1u : 0u) || port_given || ip || unix_path || use_stdio ||
			 netsrv_activation_fds() > 0;
	if (nexp == 0 && !si.listen && !snv.listen && !control) {
		/* With --control, exports may all come from export-add. */
		ret = tool_usage_error(cmd, "nothing to serve: give a SPEC or --export NAME=SPEC");
		goto out;
	}
	if ((ret = serve_iscsi_check(&si, cmd, optind < argc)) != 0)
		goto out;
	if ((ret = serve_vhost_check(&svh, cmd, optind < argc)) != 0)
		goto out;
	if ((ret = serve_nvmf_check(&snv, cmd, optind < argc)) != 0)
		goto out;
	for (unsigned i = 0; i < nexp; i++) {
		if (strlen(exports[i].name) > NBDW_STRING_MAX) {
			ret = tool_usage_error(cmd, "export name longer than %u bytes", NBDW_STRING_MAX);
			goto out;
		}
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(exports[i].name, exports[j].name) == 0) {
				ret = tool_usage_error(cmd, "export '%s' given twice", exports[i].name);
				goto out;
			}
		}
		if ((ret = tool_parse_spec(cmd, "SPEC", exports[i].spec_text, &exports[i].spec)) != 0)
			goto out;
	}
	/* TLS. */
	if (certs && psk) {
		ret = tool_usage_error(cmd, "--tls-certificates and --tls-psk are exclusive");
		goto out;
	}
	if (!tls_given && (certs || psk))
		tls_mode = NBDSRV_TLS_ON;
	if (tls_mode != NBDSRV_TLS_OFF && !certs && !psk) {
		ret = tool_usage_error(cmd, "--tls=%s needs --tls-certificates DIR or --tls-psk FILE",
				       tls_mode == NBDSRV_TLS_ON ? "on" : "require");
		goto out;
	}
	if (verify_peer && !certs) {
		ret = tool_usage_error(cmd, "--tls-verify-peer needs --tls-certificates");
		goto out;
	}
	/* Listeners. */
	act_fds = netsrv_activation_fds();
	if (act_fds < 0) {
		ret = tool_usage_error(cmd, "bad LISTEN_FDS in the environment");
		goto out;
	}
	if (act_fds > 0 && (unix_path || ip || port_given || use_stdio)) {
		ret = tool_usage_error(cmd, "socket activation (LISTEN_FDS) cannot be combined with "
				       "-U, -p, -i or -s");
		goto out;
	}
	if (use_stdio && (unix_path || ip || port_given || run)) {
		ret = tool_usage_error(cmd, "--stdio cannot be combined with -U, -p, -i or --run");
		goto out;
	}
	if (run && !unix_path && !ip && !port_given && act_fds == 0)
		unix_path = "-";

	/* Signals go to the signal thread only. They are blocked before
	 * anything is opened: threads inherit the mask, and a disk may start
	 * threads of its own when it opens (blob:'s HTTP engine, sql:'s
	 * checkpointer); one with SIGTERM unblocked would take the default
	 * action and end the process without a drain or a flush. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sv.set);
	sigaddset(&sv.set, SIGINT);
	sigaddset(&sv.set, SIGTERM);
	sigaddset(&sv.set, SIGHUP);
	sigaddset(&sv.set, SIGCHLD);
	sigaddset(&sv.set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sv.set, &oldmask);
	mask_set = true;
	sv.net = NULL;
	sv.child = 0;
	atomic_store(&sv.child_status, -1);
	atomic_store(&sv.exiting, false);
	atomic_store(&sv.phase, SERVE_OPENING);
	atomic_store(&sv.stop_pending, false);
	atomic_store(&sv.stop_sent, false);
	/* The signal thread runs from now on, so that Ctrl-C works while
	 * the exports open (regression: it was ignored until they had). */
	if (pthread_create(&sigthread, NULL, serve_signal_thread, NULL) != 0) {
		ret = tool_error(cmd, "cannot start the signal thread");
		goto out;
	}
	sigthread_started = true;

	ret = reactor_new(&r, 0);
	if (ret < 0) {
		ret = tool_error(cmd, "cannot create a reactor: %s", strerror(-ret));
		goto out;
	}
	if (certs || psk) {
		struct netsrv_tls_opts to = { .certs_dir = certs, .psk_file = psk,
					      .verify_peer = verify_peer };

		if (netsrv_tls_new(&to, &tls, err, sizeof(err)) < 0) {
			ret = tool_error(cmd, "%s", err);
			goto out;
		}
	}
	{
		struct netsrv_opts no = { .name = nbd_on ? "nbd" : si.listen ? "iscsi" : "nvme-tcp", .threads = (unsigned)threads, .tls = tls,
					  .max_connections = maxconn,
					  .handshake_timeout_s = hs_timeout,
					  .idle_timeout_s = idle_timeout };
		struct nbdsrv_opts so = { .tls_mode = tls_mode, .max_requests = (unsigned)maxreq };

		ret = netsrv_new(&no, &net);
		if (ret < 0) {
			ret = tool_error(cmd, "cannot create the server: %s", strerror(-ret));
			goto out;
		}
		tls = NULL;   /* owned by the engine now */
		ret = nbdsrv_new(&so, &srv);
		if (ret < 0) {
			ret = tool_error(cmd, "cannot create the server: %s", strerror(-ret));
			goto out;
		}
	}
	for (unsigned i = 0; i < nexp; i++) {
		struct disk *d = NULL;

		if ((ret = tool_open_spec(cmd, "SPEC", exports[i].spec, read_only, &d)) != 0)
			goto out;
		if (si.listen && exports[i].name[0] == '\0' && optind < argc) {
			iscsi_disk = disk_ref(d);   /* SPEC is also LUN 0 of the default target */
			iscsi_spec = exports[i].spec_text;
		}
		if ((svh.socket || svh.scsi_socket) && exports[i].name[0] == '\0' && optind < argc) {
			vhost_disk = disk_ref(d);
			svh.spec_text = exports[i].spec_text;
		}
		if (snv.listen && exports[i].name[0] == '\0' && optind < argc) {
			nvmf_disk = disk_ref(d);   /* SPEC is also namespace 1 */
			snv.default_spec = exports[i].spec_text;
		}
		if (!nbd_on) {
			disk_unref(d);
			continue;
		}
		ret = nbdsrv_add_export(srv, exports[i].name, exports[i].description, d, read_only);
		if (ret < 0) {
			disk_unref(d);
			ret = tool_usage_error(cmd, "cannot add export '%s': %s", exports[i].name,
					       ret == -EINVAL ? "bad name or description"
							      : strerror(-ret));
			goto out;
		}
	}
	ret = serve_iscsi_open(&si, cmd, iscsi_disk, iscsi_spec, read_only);
	disk_unref(iscsi_disk);
	iscsi_disk = NULL;
	if (ret != 0)
		goto out;
	ret = serve_nvmf_open(&snv, cmd, nvmf_disk, read_only);
	disk_unref(nvmf_disk);
	nvmf_disk = NULL;
	if (ret != 0)
		goto out;
	/* The exports are open; from here a stop signal is remembered
	 * (sockets are about to be created and must be cleaned up). */
	atomic_store(&sv.phase, SERVE_STARTING);
	ret = nbd_on ? nbdsrv_protocol(srv, net, &proto) : 0;
	if (ret < 0) {
		ret = tool_error(cmd, "cannot set up the NBD protocol: %s", strerror(-ret));
		goto out;
	}
	if (!nbd_on) {
		/* iSCSI only. */
	} else if (act_fds > 0) {
		for (int i = 0; i < act_fds; i++) {
			if (netsrv_listen_fd(net, proto, 3 + i, err, sizeof(err)) < 0) {
				ret = tool_error(cmd, "socket activation: %s", err);
				goto out;
			}
		}
	} else if (use_stdio) {
		netsrv_serve_fds(net, proto, 0, 1);
	} else {
		if (unix_path && strcmp(unix_path, "-") == 0) {
			ret = netsrv_private_unix_path("diskstack-nbd", privdir, sizeof(privdir),
						       privsock, sizeof(privsock));
			if (ret < 0) {
				ret = tool_error(cmd, "mkdtemp: %s", strerror(-ret));
				privdir[0] = '\0';
				goto out;
			}
			unix_path = privsock;
		}
		if (unix_path &&
		    (ret = netsrv_listen_unix(net, proto, unix_path, err, sizeof(err))) < 0) {
			bool busy = ret == -EADDRINUSE;

			ret = tool_error(cmd, "%s", err);
			if (busy)
				ret = EXIT_USAGE;   /* another server has that path: fix the command line */
			goto out;
		}
		if ((!unix_path || ip || port_given) &&
		    netsrv_listen_tcp(net, proto, ip, (uint16_t)port, &bound_port, err,
				      sizeof(err)) < 0) {
			ret = tool_error(cmd, "%s", err);
			goto out;
		}
	}
	if ((ret = serve_iscsi_listen(&si, cmd, net)) != 0)
		goto out;
	if (control) {
		struct serve_ctl_opts co = { .path = control, .nbd = srv, .net = net,
					     .read_only = read_only, .threads = (unsigned)threads };

		co.iscsi = &si;   /* the other frontends (serve-ctl-fe.c) */
		co.nvmf = &snv;
		co.vhost = &svh;

		if (strcmp(control, "-") == 0) {
			if (!privdir[0]) {
				ret = tool_usage_error(cmd, "--control - needs the private socket of -U -");
				goto out;
			}
			snprintf(ctlpath, sizeof(ctlpath), "%s/control", privdir);
			co.path = control = ctlpath;
		}
		if (!nbd_on) {
			ret = tool_usage_error(cmd, "--control needs the NBD server");
			goto out;
		}
		if ((ret = serve_ctl_new(&co, &ctl)) != 0)
			goto out;
		for (unsigned i = 0; i < nexp; i++)
			serve_ctl_note_export(ctl, exports[i].name, exports[i].spec_text);
	}
	if ((ret = serve_nvmf_listen(&snv, cmd, net)) != 0)
		goto out;
	ret = serve_vhost_start(&svh, cmd, vhost_disk, read_only);
	disk_unref(vhost_disk);
	vhost_disk = NULL;
	if (ret != 0)
		goto out;

	sv.net = net;
	ret = netsrv_start(net);
	if (ret < 0) {
		ret = tool_error(cmd, "cannot start the server threads: %s", strerror(-ret));
		goto out_mask;
	}
	atomic_store(&sv.phase, SERVE_RUNNING);
	pthread_kill(sigthread, SIGUSR1);
	if (ctl && (ret = serve_ctl_start(ctl)) != 0) {
		netsrv_stop(net);
		(void)netsrv_run(net);
		goto out_mask;
	}
	if (pidfile) {
		char tmp[PATH_MAX];
		FILE *fp;

		snprintf(tmp, sizeof(tmp), "%s.tmp%d", pidfile, (int)getpid());
		fp = fopen(tmp, "w");
		if (!fp || fprintf(fp, "%d\n", (int)getpid()) < 0 || fclose(fp) != 0 ||
		    rename(tmp, pidfile) < 0) {
			ret = tool_error(cmd, "cannot write pid file '%s': %s", pidfile, strerror(errno));
			unlink(tmp);
			netsrv_stop(net);
			(void)netsrv_run(net);
			goto out_mask;
		}
		pidfile_written = true;
	}
	if (bound_port && port == 0)
		log_info("serve: TCP port %u", bound_port);
	if (run) {
		char esc[NBDW_STRING_MAX * 3 + 1], sockesc[PATH_MAX * 3 + 1];
		char uri[sizeof(esc) + sizeof(sockesc) + 128];
		const char *scheme = tls_mode != NBDSRV_TLS_OFF ? "nbds" : "nbd";
		const char *expname = nexp ? exports[0].name : "";
		char portstr[16] = "";
		pid_t pid;

		for (unsigned i = 0; i < nexp; i++)
			if (exports[i].name[0] == '\0')
				expname = "";
		uri_escape(expname, esc, sizeof(esc));
		if (unix_path) {
			uri_escape(unix_path, sockesc, sizeof(sockesc));
			snprintf(uri, sizeof(uri), "%s+unix:///%s?socket=%s", scheme, esc, sockesc);
		} else {
			char host[NI_MAXHOST + 2];   /* a name or a bracketed IPv6 address */

			netsrv_client_host(ip, host, sizeof(host));
			snprintf(uri, sizeof(uri), "%s://%s:%u/%s", scheme, host, bound_port, esc);
			snprintf(portstr, sizeof(portstr), "%u", bound_port);
		}
		pid = fork();
		if (pid < 0) {
			ret = tool_error(cmd, "fork: %s", strerror(errno));
			netsrv_stop(net);
			(void)netsrv_run(net);
			goto out_mask;
		}
		if (pid == 0) {
			setenv("uri", uri, 1);
			setenv("nbd", uri, 1);
			setenv("exportname", expname, 1);
			if (unix_path)
				setenv("unixsocket", unix_path, 1);
			else
				unsetenv("unixsocket");
			if (portstr[0])
				setenv("port", portstr, 1);
			else
				unsetenv("port");
			setenv("tls", tls_mode == NBDSRV_TLS_OFF ? "0" : "1", 1);
			if (control)
				setenv("DISKSTACK_CONTROL", control, 1);
			if (snv.bound_port) {
				snprintf(portstr, sizeof(portstr), "%u", snv.bound_port);
				setenv("nvme_port", portstr, 1);
			}
			if (si.bound_port) {
				snprintf(portstr, sizeof(portstr), "%u", si.bound_port);
				setenv("iscsi_port", portstr, 1);
			}
			signal(SIGPIPE, SIG_DFL);
			pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
			execl("/bin/sh", "sh", "-c", run, (char *)NULL);
			fprintf(stderr, "diskstack serve: cannot run /bin/sh: %s\n", strerror(errno));
			_exit(127);
		}
		sv.child = pid;
		/* The child may have exited before sv.child was set. */
		pthread_kill(sigthread, SIGCHLD);
	}

	ret = netsrv_run(net) != 0 ? EXIT_RUNTIME : 0;
	serve_ctl_stop(ctl);   /* no export changes during the final flush */
	/* vhost-user drains after NBD and before the flush. */
	serve_vhost_free(&svh);
	if (nbdsrv_flush(srv) != 0 || serve_iscsi_flush(&si) != 0 || serve_nvmf_flush(&snv) != 0)
		ret = EXIT_RUNTIME;
	if (run) {
		int st = atomic_load(&sv.child_status);

		if (st < 0 && sv.child > 0) {
			/* Stopped by a signal while the command still runs. */
			kill(sv.child, SIGTERM);
			if (waitpid(sv.child, &st, 0) == sv.child)
				st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			else
				st = 1;
			sv.child = 0;
		}
		if (st > 0 || ret == 0)
			ret = st < 0 ? ret : st;
	}

out_mask:
out:
	if (sigthread_started) {
		atomic_store(&sv.exiting, true);
		pthread_kill(sigthread, SIGUSR1);
		pthread_join(sigthread, NULL);
	}
	if (pidfile_written)
		unlink(pidfile);
	serve_ctl_free(ctl);
	netsrv_free(net);
	nbdsrv_free(srv);
	serve_iscsi_free(&si);
	disk_unref(iscsi_disk);
	serve_nvmf_free(&snv);
	disk_unref(nvmf_disk);
	serve_vhost_free(&svh);
	disk_unref(vhost_disk);
	netsrv_tls_free(tls);
	reactor_free(r);
	if (mask_set)
		pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	if (privdir[0])
		rmdir(privdir);
	for (unsigned i = 0; i < nexp; i++) {
		free((char *)exports[i].name);
		spec_free(exports[i].spec);
	}
	return ret;
}
