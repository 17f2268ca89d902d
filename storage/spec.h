/* SPDX-License-Identifier: MIT */
/*
 * spec.h: disk specs (the command-line grammar, docs/openvmm-compat.md
 * §6 and docs/specs.md): the parser, the lookups in the registry of disk kinds
 * (storage/registry.c) and the resolver. What a kind declares is in kind.h.
 *
 * The kinds and their syntax are not listed here: each kind declares its
 * own (name, arguments, usage line) in its file, registry.c lists them,
 * and docs/specs.md (or `diskstack help specs`, built from the registry) shows
 * them all. A spec is KIND:ARGS[:INNER-SPEC], a bare path is a file.
 *
 * Sizes: decimal digits, optional K/M/G/T (powers of 1024, upper case), then
 * an optional B. Times (delay): decimal digits, then "ms" (the default) or
 * "us". A trailing ",ro" (or ",ro=on", ",ro=off") applies to the whole disk;
 * a trailing ",dvd" asks SCSI frontends for a read-only DVD (MMC-6, 2048-byte
 * blocks) instead of a disk: it implies ",ro" and is refused with ",ro=off"
 * and with a ";create" anywhere in the spec. Options come in any order;
 * specs cannot otherwise contain commas (except inside [...]). Striped
 * members cannot contain '+'. Parsing never opens anything; errors point at
 * the offending part.
 */
#ifndef DISKSTACK_STORAGE_SPEC_H
#define DISKSTACK_STORAGE_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "storage/kind.h"

/* The registry (storage/registry.c): every kind this program knows, built
 * in or not, NULL-terminated. */
extern const struct spec_kind *const spec_kinds[];

/* Finds a kind by name; NULL if unknown. */
const struct spec_kind *spec_kind_find(const char *name);
/* True when this build can open @k (it has an open function). */
bool spec_kind_available(const struct spec_kind *k);
/* Writes the list of kinds with their usage lines and summaries (for
 * --help), one per line, each preceded by @indent (NULL = none); kinds not
 * available in this build are marked so, with the reason. Ends with the
 * bare-path form. */
void spec_print_usage(FILE *fp, const char *indent);

/*
 * Parses @text (borrowed; the tree keeps its own copy). Returns 0 with the
 * root in *out (owned by the caller, free with spec_free), or -EINVAL with
 * a message in @err of @errlen bytes (@err may be NULL) that quotes the
 * offending part and gives its offset in @text ("bad size 'invalid' at
 * offset 4 of 'mem:invalid'") and, for unknown kinds, lists the valid ones.
 *
 * Field use per kind (others zero/NULL; each kind's descriptors say so):
 *   mem        size
 *   memdiff    inner
 *   file       path, direct, create + size (create=)
 *   sql        path, create + size (create=)
 *   sqldiff    path, create (;create), inner
 *   autocache  path = the key (NULL when empty: use the lower disk id), inner
 *   blob       arg = "flat" or "vhd1", path = the URL (http:// or https://)
 *   crypt      arg = "xts-aes-256", path = the key file, inner
 *   prwrap     inner
 *   delay      delay_read_us, delay_write_us (the same when one time), inner
 *   error      arg = the rules text (storage/decorators/error.h), inner
 *   striped    size = chunk bytes (non-zero multiple of 512), members (>= 1)
 *   nbd        path = the URI (scheme checked)
 * The bare-path form parses as a file node.
 */
int spec_parse(const char *text, struct spec **out, char *err, size_t errlen);
/* Frees a parsed spec (a root from spec_parse). NULL allowed. */
void spec_free(struct spec *s);
/* The first node of the tree @s (NULL allowed) for which @match(node,
 * @arg) is true, depth first: a node, then its inner spec's subtree, then
 * each member's in order. Returns a borrowed node, or NULL. */
const struct spec *spec_find_node(const struct spec *s,
				  bool (*match)(const struct spec *node, const void *arg),
				  const void *arg);

/*
 * Calls @fn on every argument of the tree @s that names a local file (the
 * PATH arguments of file:, sql: and sqldiff:, the crypt key file), depth
 * first, with the address of the owned string: @fn may replace it (freeing
 * the old one with free(), the new one malloc'd). For frontends that
 * change directory between parsing and opening (nbdkit's plugin makes them
 * absolute before nbdkit chdirs to /). URLs (blob:, nbd:) and the
 * autocache key are not files and are not visited. Returns 0, or the
 * first negative value @fn returns (the walk stops there).
 */
int spec_map_files(struct spec *s, int (*fn)(char **path, void *arg), void *arg);

/* Whether @text (borrowed) parses and ends in ",dvd": a frontend that can
 * serve SCSI makes it a DVD logical unit (and opens it with spec_open_str,
 * which opens it read-only). A spec that does not parse gives false; its
 * open then reports why. The parsed root says the same in spec->dvd. */
bool spec_is_dvd(const char *text);
/* Whether @text parses and ends in ",removable": a SCSI frontend makes
 * the disk a removable-medium LU (INQUIRY RMB, eject through START STOP
 * UNIT). Like spec_is_dvd, a spec that does not parse gives false. */
bool spec_is_removable(const char *text);
/* The file a spec's writes persist in (a file:, sql: or the top sqldiff:
 * layer, under decorators): frontends keep state next to the data in it
 * (a SCSI LU's persistent reservations). Writes it into @buf of @len
 * bytes; -ENOENT when the writes land nowhere lasting (mem:, memdiff:,
 * nbd:, striped:, ...), -EINVAL when @text does not parse,
 * -ENAMETOOLONG. */
int spec_write_path(const char *text, char *buf, size_t len);

/* Parses and opens in one step. */
int spec_open_str(const char *text, bool read_only, const struct spec_ctx *ctx,
		  struct disk **out, char *err, size_t errlen);

#endif
