/* SPDX-License-Identifier: MIT */
/*
 * tool.h: the subcommands of the diskstack command and the helpers they
 * share (defined in diskstack.c).
 *
 * Each subcommand takes (argc, argv) with argv[0] = the subcommand name and
 * returns the process exit status: 0 success, 1 failure at run time, 2 bad
 * usage or a bad spec (a message on stderr says what). Subcommands never
 * create or truncate anything unless a spec asks for it with create=.
 */
#ifndef DISKSTACK_TOOLS_TOOL_H
#define DISKSTACK_TOOLS_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

struct disk;
struct spec;

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

int cmd_info(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_ublk(int argc, char **argv);
int cmd_vhost_blk(int argc, char **argv);
int cmd_vhost_scsi(int argc, char **argv);
int cmd_uml_nvme(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

/* Prints a usage error "diskstack <cmd>: <msg>" and a hint; returns 2. */
int tool_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "diskstack <cmd>: <msg>" on stderr (a run-time error); returns 1. */
int tool_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reports an unknown option or a missing option argument seen by
 * getopt_long (@opt is getopt's return value, optopt/optind are read);
 * returns 2. */
int tool_bad_option(const char *cmd, int opt, char **argv);

/* Parses a size argument (same grammar as specs, plus lower-case k/m/g/t
 * and an optional "iB"/"B" after the suffix). Returns 0 or -EINVAL (also on
 * overflow). */
int tool_parse_size(const char *s, uint64_t *out);

/* Parses a decimal integer in [@min, @max]. Returns 0 or -EINVAL. */
int tool_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a duration: a number (fractions allowed) followed by ns, us, ms,
 * s (default), m or h. Returns 0 or -EINVAL. */
int tool_parse_duration_ns(const char *s, uint64_t *out);

/* Formats @bytes for humans: "512 B", "8 MiB", "1.50 GiB". */
void tool_human_size(uint64_t bytes, char *buf, size_t len);

/* Parses @text as a spec for @cmd. On error prints the parser's message
 * (which points at the offending part) naming @what ("SPEC", "SRC"...) and
 * returns 2; else 0 with the spec in *@out (owned by the caller). */
int tool_parse_spec(const char *cmd, const char *what, const char *text, struct spec **out);

/* Opens a parsed spec. Must be called with a reactor on the calling thread.
 * Returns 0 with the disk in *@out (owned by the caller), 2 for an invalid
 * spec (-EINVAL) or 1 for other failures, after printing a message that
 * names the spec. */
int tool_open_spec(const char *cmd, const char *what, const struct spec *s, bool read_only,
		   struct disk **out);

/* The context specs are opened with (the autocache directory). */
struct spec_ctx;
const struct spec_ctx *tool_spec_ctx(void);
/* True if any node of @s creates or formats something (create=, sqldiff
 * ;create). */
bool tool_spec_creates(const struct spec *s);

/* A JSON string of @s (NULL = ""), invalid UTF-8 replaced by U+FFFD
 * (jansson refuses it); a new reference, NULL on out of memory. */
json_t *tool_json_str(const char *s);
/* Prints @j and a newline: 2-space indented if @pretty, else compact.
 * Returns 0 or -EIO. */
int tool_json_print(FILE *fp, const json_t *j, bool pretty);
/* The `diskstack info --json` object of @d (cmd-info.c), with "spec":
 * @spec_text when not NULL. A new reference, NULL on out of memory. */
json_t *tool_disk_json(struct disk *d, const char *spec_text);
/* Names for disk_info fields (static strings). */
const char *tool_unmap_str(int unmap_behavior);
/* Writes the names of the DISK_CAP_* bits in @caps separated by @sep into
 * @buf ("none" if no bit is set). */
void tool_caps_str(uint32_t caps, const char *sep, char *buf, size_t len);
/* Calls @fn for the name of each bit set in @caps (unknown bits as "0x..").*/
void tool_caps_foreach(uint32_t caps, void (*fn)(const char *name, void *opaque), void *opaque);

#endif
