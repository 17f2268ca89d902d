/* SPDX-License-Identifier: MIT */
/*
 * delay.c: the delay decorator (docs/openvmm-compat.md §5.2, §5.4):
 * reads and writes wait, everything else goes straight through.
 *
 * Notes on the design
 * -------------------
 * - The delays are two atomics (microseconds), read once when a request
 *   arrives; delay_set() stores new values from any thread, so a change
 *   applies to the next request and never to one already waiting.
 * - A delayed request waits on a reactor timer embedded in its io->hctx
 *   (no allocation, no sleeping thread, so any number of requests wait side
 *   by side on one reactor), then goes to the inner disk as a child request
 *   from the per-reactor cache. As upstream, the delay comes first and the
 *   inner disk's own latency adds to it: a request never completes before
 *   its delay.
 * - A zero delay hands the request straight to the disk below (disk_forward):
 *   no timer, no child request, so delay:0 costs one atomic load.
 * - Write-zeroes and CACHE are forwarded explicitly (undelayed) rather than
 *   left NULL: a NULL op passes through only when the inner disk has one,
 *   and the dispatcher's emulation would otherwise send plain writes back
 *   through this disk and delay them; the behaviour must not depend on
 *   what is below. Eject answers UNSUPPORTED (§5.4). Flush, unmap, block
 *   status, persistent reservations, the sector count and resize pass
 *   through (NULL ops).
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "storage/decorators/delay.h"
#include "storage/kind.h"

struct delay_disk {
	_Atomic uint64_t read_us;      /* current read delay */
	_Atomic uint64_t write_us;     /* current write delay */
};

/* Request state in io->hctx: the timer, then the handling disk (io->disk
 * may be a pass-through decorator above this one). */
enum { H_TIMER = 0, H_DISK = 3 };
_Static_assert(sizeof(struct reactor_timer) <= H_DISK * sizeof(uintptr_t),
	       "a reactor timer fits in the first three hctx slots");

static const struct disk_ops delay_ops;

static struct delay_disk *delay_of(struct disk *d) { return disk_priv(d); }

static inline struct reactor_timer *delay_timer(struct disk_io *io)
{
	return (struct reactor_timer *)(void *)&io->hctx[H_TIMER];
}

/* ---- forwarding ------------------------------------------------------------ */

static void delay_child_done(struct disk_io *child)
{
	struct disk_io *io = child->opaque;
	int st = child->status;

	disk_io_copy_result(io, child);
	disk_io_put(io->reactor, child);
	disk_io_complete(io, st);
}

/* Sends @io to the disk below @d as a child request. Returns DISK_PENDING
 * or an error status. */
static int delay_forward(struct disk *d, struct disk_io *io)
{
	struct disk_io *child = disk_io_get_copy(io, delay_child_done);

	if (!child)
		return DISK_IO_ERROR;
	disk_submit(disk_lower(d), child);
	return DISK_PENDING;
}

/* ---- read and write ----------------------------------------------------------- */

static void delay_fire(struct reactor_timer *t)
{
	struct disk_io *io = container_of((uintptr_t *)(void *)t, struct disk_io, hctx[H_TIMER]);
	int st = delay_forward((struct disk *)io->hctx[H_DISK], io);

	if (st != DISK_PENDING)
		disk_io_complete(io, st);
}

static int delay_rw(struct disk *d, struct disk_io *io)
{
	struct delay_disk *dd = delay_of(d);
	uint64_t us = atomic_load_explicit(io->op == DISK_OP_READ ? &dd->read_us : &dd->write_us,
					   memory_order_relaxed);
	struct reactor_timer *t;

	if (us == 0)
		return disk_forward(disk_lower(d), io);
	io->hctx[H_DISK] = (uintptr_t)d;
	t = delay_timer(io);
	memset(t, 0, sizeof(*t));
	t->fn = delay_fire;
	reactor_timer_start(io->reactor, t, us * 1000);
	return DISK_PENDING;
}

/* ---- the other ops ------------------------------------------------------------- */

static int delay_forward_op(struct disk *d, struct disk_io *io)
{
	return delay_forward(d, io);
}

static int delay_eject(struct disk *d UNUSED, struct disk_io *io UNUSED)
{
	return DISK_UNSUPPORTED;
}

/* "5ms" when whole milliseconds, else "1500us". */
static void delay_describe_time(struct disk_describer *dd, const char *key, uint64_t us)
{
	if (us % 1000 == 0)
		disk_describe_paramf(dd, key, "%llums", (unsigned long long)(us / 1000));
	else
		disk_describe_paramf(dd, key, "%lluus", (unsigned long long)us);
}

static void delay_describe(struct disk *d, struct disk_describer *dd)
{
	struct delay_disk *dl = delay_of(d);

	delay_describe_time(dd, "read-delay", atomic_load(&dl->read_us));
	delay_describe_time(dd, "write-delay", atomic_load(&dl->write_us));
}

static void delay_close(struct disk *d)
{
	free(delay_of(d));
}

static const struct disk_ops delay_ops = {
	.version = DISK_OPS_VERSION,
	.read = delay_rw,
	.write = delay_rw,
	.write_zeroes = delay_forward_op,
	.cache = delay_forward_op,
	.eject = delay_eject,
	.describe = delay_describe,
	.close = delay_close,
};

/* ---- the API ----------------------------------------------------------------------- */

int delay_new(uint64_t read_us, uint64_t write_us, struct disk *lower, struct disk **out,
	      char *err, size_t errlen)
{
	struct delay_disk *dd;
	struct disk_info info;
	int r;

	*out = NULL;
	if (read_us > DELAY_MAX_US || write_us > DELAY_MAX_US) {
		snprintf(err, errlen, "delay %llu us is too long (at most one hour)",
			 (unsigned long long)MAX(read_us, write_us));
		return -EINVAL;
	}
	dd = calloc(1, sizeof(*dd));
	if (!dd) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&dd->read_us, read_us);
	atomic_init(&dd->write_us, write_us);
	disk_info_inherit(&info, lower);
	info.type = "delay";
	info.caps &= ~DISK_CAP_EJECT;
	r = disk_new(&delay_ops, &info, dd, lower, out);
	if (r < 0) {
		snprintf(err, errlen, "%s", strerror(-r));
		free(dd);
		return r;
	}
	return 0;
}

int delay_set(struct disk *d, uint64_t read_us, uint64_t write_us)
{
	struct delay_disk *dd;

	if (!d || !disk_has_ops(d, &delay_ops) || read_us > DELAY_MAX_US ||
	    write_us > DELAY_MAX_US)
		return -EINVAL;
	dd = delay_of(d);
	atomic_store_explicit(&dd->read_us, read_us, memory_order_relaxed);
	atomic_store_explicit(&dd->write_us, write_us, memory_order_relaxed);
	return 0;
}

int delay_get(struct disk *d, uint64_t *read_us, uint64_t *write_us)
{
	struct delay_disk *dd;

	if (!d || !disk_has_ops(d, &delay_ops))
		return -EINVAL;
	dd = delay_of(d);
	if (read_us)
		*read_us = atomic_load_explicit(&dd->read_us, memory_order_relaxed);
	if (write_us)
		*write_us = atomic_load_explicit(&dd->write_us, memory_order_relaxed);
	return 0;
}

static int delay_spec_wrap(const struct spec *s, struct disk *lower, void *arg,
			   struct disk **out, char *err, size_t errlen)
{
	(void)arg;
	return delay_new(s->delay_read_us, s->delay_write_us, lower, out, err, errlen);
}

/* The delay: kind's open function. */
static int delay_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			   struct disk **out, char *err, size_t errlen)
{
	*out = NULL;
	/* Check the values before the inner disk is opened (or created). */
	if (s->delay_read_us > DELAY_MAX_US || s->delay_write_us > DELAY_MAX_US) {
		snprintf(err, errlen, "delay %llu us is too long (at most one hour)",
			 (unsigned long long)MAX(s->delay_read_us, s->delay_write_us));
		return -EINVAL;
	}
	return spec_open_decorator(s, read_only, ctx, delay_spec_wrap, NULL, out, err, errlen);
}

const struct spec_kind delay_kind_delay = {
	.name = "delay",
	.usage = "delay:<time>[/<time>]:<spec>",
	.summary = "delays reads[/writes] of <spec>; time in ms, or with a 'us' suffix",
	.open_disk = delay_spec_open,
	.args = { { .type = SPEC_ARG_TIMES, .name = "delay", .field = SPEC_FIELD(delay_read_us),
		    .field2 = SPEC_FIELD(delay_write_us),
		    .missing_next = "missing ':<spec>' after the delay",
		    .missing_next_hint = "write delay:<time>[/<time>]:<spec>" } },
	.nargs = 1,
	.tail = SPEC_TAIL_INNER,
};
