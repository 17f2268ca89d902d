/* SPDX-License-Identifier: MIT */
/*
 * cmd-create.c: `diskstack create FILE SIZE [--type raw|vhd|sql]
 * [--sector-size N] [--preallocate] [--force]` — makes a new raw image, a
 * fixed VHD or a SQLite disk (.dbhd).
 *
 * Notes on the design
 * -------------------
 * - The type comes from --type, else from the extension (.vhd and .vmgs:
 *   vhd, .dbhd: sql, anything else: raw). An existing FILE is never
 *   touched without --force; with it, a regular file is replaced (for sql,
 *   with its -wal and -shm files). Devices are refused.
 * - Raw and VHD images are sparse unless --preallocate, which allocates the
 *   data region with fallocate in 64 MiB steps (writing zeroes in 1 MiB
 *   steps where the filesystem cannot), with a progress bar on a terminal.
 *   The VHD footer is written after the data region and fsynced.
 * - A .dbhd is formatted by the SQLite layer (storage/sqlitelayer.h): no
 *   sector rows, so it is always sparse; --preallocate does not apply.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "storage/layers/sqlitelayer.h"
#include "storage/backends/vhd1.h"
#include "tools/progress.h"
#include "tools/tool.h"

static const char cmd_name[] = "create";

#define CREATE_FALLOC_STEP (64ull << 20)
#define CREATE_WRITE_STEP (1u << 20)

enum create_type { TYPE_RAW, TYPE_VHD, TYPE_SQL };
static const char *const type_names[] = { [TYPE_RAW] = "raw", [TYPE_VHD] = "vhd",
					  [TYPE_SQL] = "sql" };

static void create_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack create FILE SIZE [--type raw|vhd|sql] [--sector-size N]\n"
		"                        [--preallocate] [--force] [--quiet]\n"
		"\n"
		"Creates a new disk image of SIZE bytes (K/M/G/T suffixes):\n"
		"  raw  a plain image (file:FILE)\n"
		"  vhd  a fixed VHD: the data followed by a 512-byte footer (file:FILE.vhd)\n"
		"  sql  a SQLite disk, OpenVMM's .dbhd format (sql:FILE)\n"
		"The type defaults from the extension: .vhd/.vmgs -> vhd, .dbhd -> sql,\n"
		"anything else -> raw.\n"
		"\n"
		"Options:\n"
		"  --type TYPE        raw, vhd or sql\n"
		"  --sector-size N    sql only: logical sector size, a power of two >= 512\n"
		"                     (default 512; raw and vhd images always use 512)\n"
		"  --preallocate      raw and vhd: allocate the data blocks now (not sparse)\n"
		"  --force            replace FILE if it exists (DESTROYS its data)\n"
		"  -q, --quiet        no progress bar and no summary line\n"
		"  -h, --help         show this help\n"
		"\n"
		"See docs/diskstack-create.md.\n");
}

static enum create_type type_from_ext(const char *path)
{
	const char *base = strrchr(path, '/');
	const char *dot;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	if (!dot || dot == base)
		return TYPE_RAW;
	if (strcasecmp(dot + 1, "vhd") == 0 || strcasecmp(dot + 1, "vmgs") == 0)
		return TYPE_VHD;
	if (strcasecmp(dot + 1, "dbhd") == 0)
		return TYPE_SQL;
	return TYPE_RAW;
}

/* Allocates [0, size) of @fd, with progress. Returns 0 or -errno. */
static int preallocate(int fd, uint64_t size, bool quiet)
{
	struct progress p;
	uint64_t off = 0;
	void *zero = NULL;
	bool use_write = false;
	int r = 0;

	progress_start(&p, "preallocate", size, quiet);
	while (off < size) {
		if (!use_write) {
			uint64_t n = MIN(CREATE_FALLOC_STEP, size - off);

			if (fallocate(fd, 0, (off_t)off, (off_t)n) == 0) {
				off += n;
				progress_update(&p, off);
				continue;
			}
			if (errno != EOPNOTSUPP) {
				r = -errno;
				break;
			}
			/* No fallocate here: write zeroes. */
			use_write = true;
			zero = calloc(1, CREATE_WRITE_STEP);
			if (!zero) {
				r = -ENOMEM;
				break;
			}
		}
		size_t n = (size_t)MIN((uint64_t)CREATE_WRITE_STEP, size - off);
		ssize_t w = pwrite(fd, zero, n, (off_t)off);

		if (w < 0) {
			r = -errno;
			break;
		}
		off += (uint64_t)w;
		progress_update(&p, off);
	}
	free(zero);
	if (r == 0)
		progress_finish(&p);
	else if (p.enabled)
		fputc('\n', stderr);
	return r;
}

/* Removes an existing FILE (and sql sidecars) for --force. */
static int remove_existing(const char *path, enum create_type type)
{
	char side[4096];

	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	if (type == TYPE_SQL) {
		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
	}
	return 0;
}

static int create_file(const char *path, enum create_type type, uint64_t size, bool prealloc,
		       bool quiet)
{
	CLEANUP_CLOSE int fd = -1;
	int r;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		return tool_error(cmd_name, "cannot create '%s': %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0) {
		r = errno;
		unlink(path);
		return tool_error(cmd_name, "cannot size '%s' to %" PRIu64 " bytes: %s", path, size,
				  strerror(r));
	}
	if (prealloc) {
		r = preallocate(fd, size, quiet);
		if (r < 0) {
			unlink(path);
			return tool_error(cmd_name, "cannot preallocate '%s': %s", path, strerror(-r));
		}
	}
	if (type == TYPE_VHD) {
		r = vhd1_write_footer(fd, size);
		if (r < 0) {
			unlink(path);
			return tool_error(cmd_name, "cannot write the VHD footer of '%s': %s", path,
					  strerror(-r));
		}
	} else if (fsync(fd) < 0) {
		r = errno;
		return tool_error(cmd_name, "cannot sync '%s': %s", path, strerror(r));
	}
	return 0;
}

int cmd_create(int argc, char **argv)
{
	enum { OPT_TYPE = 256, OPT_SECTOR_SIZE, OPT_PREALLOCATE, OPT_FORCE };
	static const struct option longopts[] = {
		{ "type",        required_argument, NULL, OPT_TYPE },
		{ "sector-size", required_argument, NULL, OPT_SECTOR_SIZE },
		{ "preallocate", no_argument,       NULL, OPT_PREALLOCATE },
		{ "force",       no_argument,       NULL, OPT_FORCE },
		{ "quiet",       no_argument,       NULL, 'q' },
		{ "help",        no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_type = false, prealloc = false, force = false, quiet = false;
	enum create_type type = TYPE_RAW;
	uint64_t size, ss = 0;
	const char *path;
	struct stat st;
	char human[32];
	int opt, r;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_TYPE:
			have_type = false;
			for (unsigned i = 0; i < ARRAY_SIZE(type_names); i++) {
				if (strcmp(optarg, type_names[i]) == 0) {
					type = (enum create_type)i;
					have_type = true;
				}
			}
			if (!have_type)
				return tool_usage_error(cmd_name, "bad --type '%s' (raw, vhd or sql)",
							optarg);
			break;
		case OPT_SECTOR_SIZE:
			if (tool_parse_uint(optarg, 512, 1u << 20, &ss) < 0 || !IS_POW2(ss))
				return tool_usage_error(cmd_name, "bad --sector-size '%s' (a power of "
							"two from 512 to 1048576)", optarg);
			break;
		case OPT_PREALLOCATE:
			prealloc = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			create_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd_name, opt, argv);
		}
	}
	if (argc - optind < 2)
		return tool_usage_error(cmd_name, "missing %s", argc - optind == 0 ? "FILE and SIZE"
										    : "SIZE");
	if (argc - optind > 2)
		return tool_usage_error(cmd_name, "too many arguments ('%s')", argv[optind + 2]);
	path = argv[optind];
	if (!*path)
		return tool_usage_error(cmd_name, "empty FILE");
	if (tool_parse_size(argv[optind + 1], &size) < 0 || size == 0)
		return tool_usage_error(cmd_name, "bad SIZE '%s' (a non-zero size, e.g. 1G)",
					argv[optind + 1]);
	if (!have_type)
		type = type_from_ext(path);
	if (ss && type != TYPE_SQL && ss != 512)
		return tool_usage_error(cmd_name, "--sector-size applies to sql disks only (%s "
					"images have 512-byte sectors)", type_names[type]);
	if (!ss)
		ss = 512;
	if (size % ss)
		return tool_usage_error(cmd_name, "SIZE %" PRIu64 " is not a multiple of the "
					"%" PRIu64 "-byte sector", size, ss);
	if (size > (uint64_t)INT64_MAX - 512)
		return tool_usage_error(cmd_name, "SIZE %" PRIu64 " is too large", size);
	if (prealloc && type == TYPE_SQL)
		return tool_usage_error(cmd_name, "--preallocate does not apply to sql disks "
					"(a .dbhd holds only the sectors written)");
#ifndef HAVE_SQLITE
	/* Refused before anything is touched (configure --without-sqlite). */
	if (type == TYPE_SQL)
		return tool_error(cmd_name, "sql: this diskstack was built without SQLite");
#endif

	if (lstat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			return tool_error(cmd_name, "'%s' exists and is not a regular file; refusing "
					  "to replace it", path);
		if (!force)
			return tool_error(cmd_name, "'%s' already exists; use --force to replace it "
					  "(destroying its data)", path);
		r = remove_existing(path, type);
		if (r < 0)
			return tool_error(cmd_name, "cannot remove '%s': %s", path, strerror(-r));
	} else if (errno != ENOENT) {
		return tool_error(cmd_name, "'%s': %s", path, strerror(errno));
	}

#ifdef HAVE_SQLITE
	if (type == TYPE_SQL) {
		struct sqlitelayer_format f = { .len_bytes = size, .sector_size = (uint32_t)ss };
		char err[512] = "";

		r = sqlitelayer_format_file(path, &f, err, sizeof(err));
		if (r < 0) {
			remove_existing(path, type);
			return tool_error(cmd_name, "cannot create '%s': %s", path,
					  err[0] ? err : strerror(-r));
		}
	} else
#endif
	{
		r = create_file(path, type, size, prealloc, quiet);
		if (r)
			return r;
	}
	if (!quiet) {
		tool_human_size(size, human, sizeof(human));
		printf("created %s: %s, %s (%" PRIu64 " sectors of %" PRIu64 " bytes)%s\n", path,
		       type_names[type], human, size / ss, ss,
		       prealloc ? ", preallocated" : "");
	}
	return 0;
}
