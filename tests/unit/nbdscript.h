/* SPDX-License-Identifier: MIT */
/*
 * nbdscript.h: a scripted NBD server for tests of the nbd: backend
 * (storage/nbdclient.c): the fuzz target tests/fuzz/fuzz-nbd-client and
 * tests/unit/test-nbdclient.c. The backend's connections become
 * socketpairs (its connect_fd test hook) to a server thread that says what
 * a script tells it, valid or not.
 *
 * A script (big-endian fields):
 *   header, NBDSCRIPT_HEADER_BYTES bytes:
 *     u8  mode    NBDSCRIPT_RAW: the server sends the rest of the script
 *                 as it is, from the first greeting byte, and reads
 *                 nothing; NBDSCRIPT_NO_SR, _NO_META, _NO_GO: refuse
 *                 STRUCTURED_REPLY, SET_META_CONTEXT, GO (the client then
 *                 falls back to EXPORT_NAME); _NO_BLOCK_SIZE: no
 *                 NBD_INFO_BLOCK_SIZE; _META_OTHER: answer
 *                 SET_META_CONTEXT with another name; _OPEN_RO: the
 *                 client should open the disk read-only
 *     u16 transmission flags (NBD_FLAG_HAS_FLAGS is always added)
 *     u64 export size
 *     u32 minimum, preferred, maximum block size
 *     u32 id of the base:allocation context
 *   then a program of replies. The server does the handshake itself
 *   (answering the options the client sends), then reads one request at a
 *   time and runs ops until one ends its reply:
 *     0 SIMPLE  u32 error; a successful READ gets the request's length of
 *               0xa5 bytes                                     (ends it)
 *     1 DATA    u8 flags, u32 offset (from the request's), u32 length
 *               (0xffffffff: the request's), u8 fill: OFFSET_DATA chunk
 *     2 HOLE    u8 flags, u32 offset, u32 length: OFFSET_HOLE chunk
 *     3 STATUS  u8 flags, u32 id (XORed with the negotiated one), u8 n,
 *               n x (u32 length, u32 flags): BLOCK_STATUS chunk
 *     4 CHUNK   u8 flags, u16 type, u16 length, payload: any chunk
 *     5 RAW     u16 length, bytes: sent as they are
 *     6 CLOSE   the connection ends (the client may reconnect: each new
 *               connection does the handshake again and goes on with the
 *               rest of the program; at most 3 connections)
 *   Op numbers are taken modulo 8; 7 is SIMPLE with error 0. A chunk whose
 *   flags have bit 0 (NBD_REPLY_FLAG_DONE) ends the reply. When the
 *   program runs out, the server closes the connection.
 *
 * A server that stops answering while the client waits for it (a reply
 * the client did not take as complete) would hang both: the server closes
 * the connection once the client thread is blocked in its reactor (in
 * nbdscript_run_until) with nothing sent and nothing unread, three checks
 * in a row 5 ms apart.
 */
#ifndef DISKSTACK_TESTS_NBDSCRIPT_H
#define DISKSTACK_TESTS_NBDSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nbdclient_opts;
struct reactor;
struct nbdscript;

#define NBDSCRIPT_HEADER_BYTES 27
enum {
	NBDSCRIPT_RAW = 1, NBDSCRIPT_NO_SR = 2, NBDSCRIPT_NO_META = 4,
	NBDSCRIPT_NO_BLOCK_SIZE = 8, NBDSCRIPT_NO_GO = 16, NBDSCRIPT_META_OTHER = 32,
	NBDSCRIPT_OPEN_RO = 64,
};

/* When set, the server traces each request on stderr. */
extern bool nbdscript_verbose;

/* A server for @script (borrowed until nbdscript_free). Returns 0 or
 * -ENOMEM. */
int nbdscript_new(const uint8_t *script, size_t size, struct nbdscript **out);
/* Waits for the server thread (the client must have closed its disk) and
 * frees @s. NULL is allowed. */
void nbdscript_free(struct nbdscript *s);
/* Points @o's connect_fd hook at @s. */
void nbdscript_client_opts(struct nbdscript *s, struct nbdclient_opts *o);
/* Whether the client should open read-only (the export says so, or the
 * mode asks). */
bool nbdscript_read_only(const struct nbdscript *s);
/* Runs @r until *@left becomes 0 (decremented by completions), telling
 * the server when the thread is blocked with nothing to do. */
void nbdscript_run_until(struct nbdscript *s, struct reactor *r, const unsigned *left);

#endif
