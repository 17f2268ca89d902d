/* SPDX-License-Identifier: MIT */
/*
 * ubsrv-record.c: device records — one small text file per served device
 * under /run/diskstack/ublk/, so that `ublk list` can show the spec and
 * server of each device and `ublk recover` knows what a dead server served.
 *
 * Notes on the design
 * -------------------
 * - Format: "key=value" lines; values escape backslash and newline ("\\",
 *   "\n") so any spec round-trips. Unknown keys are ignored (newer writers),
 *   a missing id or spec makes the record malformed.
 * - Written to a temporary file in the same directory, fsynced and renamed
 *   over the old one: a reader sees the old record or the new one, never a
 *   half-written one. /run is a tmpfs: records do not survive a reboot, and
 *   neither do ublk devices.
 * - $DISKSTACK_RUN_DIR replaces /run/diskstack (tests, unprivileged use).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "ublk/ubsrv.h"

#define UBSRV_RECORD_MAX_BYTES 65536

const char *ubsrv_record_dir(void)
{
	static char dir[PATH_MAX];
	const char *base = getenv("DISKSTACK_RUN_DIR");

	snprintf(dir, sizeof(dir), "%s/ublk", base && *base ? base : "/run/diskstack");
	return dir;
}

/* "<dir>/<id>" into @buf of PATH_MAX bytes. */
static int ubsrv_record_path(char *buf, uint32_t id)
{
	int n = snprintf(buf, PATH_MAX, "%s/%" PRIu32, ubsrv_record_dir(), id);

	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int ubsrv_mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void ubsrv_put_escaped(FILE *fp, const char *key, const char *value)
{
	fprintf(fp, "%s=", key);
	for (const char *p = value ? value : ""; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", fp);
		else if (*p == '\n')
			fputs("\\n", fp);
		else
			fputc(*p, fp);
	}
	fputc('\n', fp);
}

int ubsrv_record_write(const struct ubsrv_record *r)
{
	const char *dir = ubsrv_record_dir();
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *fp;
	int fd, ret;

	ret = ubsrv_mkdir_p(dir);
	if (ret < 0)
		return ret;
	ret = ubsrv_record_path(path, r->id);
	if (ret < 0)
		return ret;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	fp = fdopen(fd, "w");
	if (!fp) {
		ret = -errno;
		close(fd);
		unlink(tmp);
		return ret;
	}
	fprintf(fp, "# diskstack ublk device record\n");
	fprintf(fp, "id=%" PRIu32 "\n", r->id);
	fprintf(fp, "pid=%d\n", r->pid);
	ubsrv_put_escaped(fp, "spec", r->spec);
	ubsrv_put_escaped(fp, "cwd", r->cwd);
	fprintf(fp, "queues=%u\n", r->queues);
	fprintf(fp, "depth=%u\n", r->depth);
	fprintf(fp, "max_io=%" PRIu32 "\n", r->max_io_bytes);
	fprintf(fp, "flags=0x%" PRIx64 "\n", r->flags);
	fprintf(fp, "size=%" PRIu64 "\n", r->size_bytes);
	fprintf(fp, "read_only=%d\n", r->read_only ? 1 : 0);
	fprintf(fp, "user_copy=%d\n", r->user_copy ? 1 : 0);
	if (fflush(fp) != 0 || fsync(fd) != 0) {
		ret = -errno;
		fclose(fp);
		unlink(tmp);
		return ret;
	}
	if (fclose(fp) != 0) {
		ret = -errno;
		unlink(tmp);
		return ret;
	}
	if (rename(tmp, path) < 0) {
		ret = -errno;
		unlink(tmp);
		return ret;
	}
	return 0;
}

/* Unescapes @s in place. */
static void ubsrv_unescape(char *s)
{
	char *w = s;

	for (char *p = s; *p; p++) {
		if (*p == '\\' && p[1] == 'n') {
			*w++ = '\n';
			p++;
		} else if (*p == '\\' && p[1] == '\\') {
			*w++ = '\\';
			p++;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

static int ubsrv_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int ubsrv_record_read(uint32_t id, struct ubsrv_record *r)
{
	char path[PATH_MAX];
	char *text = NULL;
	bool have_id = false;
	FILE *fp;
	size_t n;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	ret = ubsrv_record_path(path, id);
	if (ret < 0)
		return ret;
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	text = malloc(UBSRV_RECORD_MAX_BYTES + 1);
	if (!text) {
		fclose(fp);
		return -ENOMEM;
	}
	n = fread(text, 1, UBSRV_RECORD_MAX_BYTES, fp);
	fclose(fp);
	text[n] = '\0';

	for (char *line = text, *next; line && *line; line = next) {
		char *eq;
		uint64_t v;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			ret = -EINVAL;
			break;
		}
		*eq++ = '\0';
		if (strcmp(line, "spec") == 0 || strcmp(line, "cwd") == 0) {
			char *copy = strdup(eq);

			if (!copy) {
				ret = -ENOMEM;
				break;
			}
			ubsrv_unescape(copy);
			if (line[0] == 's') {
				free(r->spec);
				r->spec = copy;
			} else {
				free(r->cwd);
				r->cwd = copy;
			}
			continue;
		}
		if (strcmp(line, "pid") == 0) {
			if (ubsrv_parse_u64(eq, INT32_MAX, &v) < 0) {
				ret = -EINVAL;
				break;
			}
			r->pid = (int)v;
			continue;
		}
		if (ubsrv_parse_u64(eq, UINT64_MAX, &v) < 0) {
			/* Unknown keys may carry anything; known ones must parse. */
			if (strcmp(line, "id") == 0 || strcmp(line, "queues") == 0 ||
			    strcmp(line, "depth") == 0 || strcmp(line, "max_io") == 0 ||
			    strcmp(line, "flags") == 0 || strcmp(line, "size") == 0 ||
			    strcmp(line, "read_only") == 0 || strcmp(line, "user_copy") == 0) {
				ret = -EINVAL;
				break;
			}
			continue;
		}
		if (strcmp(line, "id") == 0) {
			if (v > UINT32_MAX) {
				ret = -EINVAL;
				break;
			}
			r->id = (uint32_t)v;
			have_id = true;
		} else if (strcmp(line, "queues") == 0) {
			r->queues = (unsigned)MIN(v, (uint64_t)UINT32_MAX);
		} else if (strcmp(line, "depth") == 0) {
			r->depth = (unsigned)MIN(v, (uint64_t)UINT32_MAX);
		} else if (strcmp(line, "max_io") == 0) {
			r->max_io_bytes = (uint32_t)MIN(v, (uint64_t)UINT32_MAX);
		} else if (strcmp(line, "flags") == 0) {
			r->flags = v;
		} else if (strcmp(line, "size") == 0) {
			r->size_bytes = v;
		} else if (strcmp(line, "read_only") == 0) {
			r->read_only = v != 0;
		} else if (strcmp(line, "user_copy") == 0) {
			r->user_copy = v != 0;
		}
	}
	free(text);
	if (ret == 0 && (!have_id || r->id != id || !r->spec))
		ret = -EINVAL;
	if (ret < 0)
		ubsrv_record_clear(r);
	return ret;
}

int ubsrv_record_remove(uint32_t id)
{
	char path[PATH_MAX];
	int ret = ubsrv_record_path(path, id);

	if (ret < 0)
		return ret;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

void ubsrv_record_clear(struct ubsrv_record *r)
{
	free(r->spec);
	free(r->cwd);
	r->spec = NULL;
	r->cwd = NULL;
}

static int ubsrv_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int ubsrv_record_ids(uint32_t **ids, size_t *n)
{
	DIR *d = opendir(ubsrv_record_dir());
	struct dirent *de;
	uint32_t *v = NULL;
	size_t len = 0, cap = 0;

	*ids = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		uint64_t id;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		if (ubsrv_parse_u64(de->d_name, UINT32_MAX, &id) < 0)
			continue;
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint32_t *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		v[len++] = (uint32_t)id;
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof(*v), ubsrv_cmp_u32);
	*ids = v;
	*n = len;
	return 0;
}
