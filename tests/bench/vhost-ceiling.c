/* SPDX-License-Identifier: MIT */
/*
 * vhost-ceiling.c: the host-side load generator of bench-vhost-ceiling.sh
 * (docs/bench-vhost.md): the test front-end (tests/unit/vhostfront.h)
 * connects to a running vhost-user-blk back-end, starts one queue of 128
 * entries as QEMU 7.2 does, and keeps IODEPTH virtio-blk requests in
 * flight for SECONDS — as a Linux driver would: indirect chains, kicks
 * only when the device's avail_event asks for one, completions reaped in
 * batches with an interrupt asked for through used_event. It prints one
 * line: requests, seconds, IOPS, the back-end process's CPU seconds
 * (utime + stime from /proc/PID/stat over the run) and IOPS per back-end
 * core (requests / back-end CPU seconds).
 *
 * vhost-ceiling SOCKET PID randread|randwrite|read|write BS IODEPTH SECONDS DISK_BYTES
 *
 * SECONDS 0 makes one sequential pass over the disk instead (write: to
 * fill a mem: disk, whose first write to a block allocates it).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/vhostfront.h"
#include "vhost/proto.h"

#define QSIZE 128
#define MAX_DEPTH 64

struct slot {
	uint64_t hdr, data, status;
	bool busy;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of @pid in seconds. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Fields after the command's closing parenthesis: 3 state ... 14
	 * utime 15 stime. */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(int argc, char **argv)
{
	struct vfront_opts fo = { .queues = 1, .qsize = QSIZE, .mem_bytes = 256u << 20,
				  .no_inflight = true };
	struct slot slots[MAX_DEPTH] = { 0 }, *by_head[QSIZE] = { 0 };
	uint64_t rng = 0x9e3779b97f4a7c15ull, ops = 0, next_seq = 0, blocks;
	struct vfront *f = NULL;
	double t0, t1, c0, c1, secs;
	unsigned depth, bs, inflight = 0;
	uint16_t seen = 0;
	bool write, seq;
	long pid;
	int sock, ret;

	if (argc != 8) {
		fprintf(stderr, "usage: vhost-ceiling SOCKET PID randread|randwrite|read|write BS "
				"IODEPTH SECONDS DISK_BYTES\n");
		return 2;
	}
	pid = strtol(argv[2], NULL, 10);
	write = strstr(argv[3], "write") != NULL;
	seq = strncmp(argv[3], "rand", 4) != 0;
	bs = (unsigned)strtoul(argv[4], NULL, 0);
	depth = (unsigned)strtoul(argv[5], NULL, 0);
	secs = strtod(argv[6], NULL);
	if (secs <= 0)
		seq = true;
	blocks = strtoull(argv[7], NULL, 0) / bs;
	if (depth == 0 || depth > MAX_DEPTH || bs == 0 || bs % 512 || blocks == 0 ||
	    (uint64_t)depth * (bs + 4096) > (128u << 20)) {
		fprintf(stderr, "vhost-ceiling: bad arguments\n");
		return 2;
	}
	if ((sock = vfront_connect_unix(argv[1])) < 0 || vfront_new(&fo, sock, &f) < 0 ||
	    (ret = vfront_realize(f)) < 0 || (ret = vfront_start(f, false)) < 0) {
		fprintf(stderr, "vhost-ceiling: cannot start the device on %s\n", argv[1]);
		return 1;
	}
	for (unsigned i = 0; i < depth; i++) {
		slots[i].hdr = vfront_alloc(f, 16);
		slots[i].status = vfront_alloc(f, 8);
		slots[i].data = vfront_alloc(f, bs);
		if (!slots[i].hdr || !slots[i].status || !slots[i].data) {
			fprintf(stderr, "vhost-ceiling: guest memory is full\n");
			return 1;
		}
		memset(vfront_ptr(f, slots[i].data), 0x5a, bs);
	}
	t0 = now_s();
	c0 = proc_cpu_s(pid);
	t1 = t0;
	for (;;) {
		uint16_t old = vfront_avail_idx(f, 0), id;
		bool stop = secs > 0 ? t1 - t0 >= secs : next_seq >= blocks;
		uint32_t len;

		/* Submit every free slot (all of them the first time, then
		 * those reaped below), then one kick if the device wants it. */
		for (unsigned k = 0; k < depth && !stop && (secs > 0 || next_seq < blocks); k++) {
			struct slot *s = &slots[k];
			uint8_t *h = vfront_ptr(f, s->hdr);
			uint32_t type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
			struct vfront_buf b[3] = { { s->hdr, 16, false }, { s->data, bs, !write },
						   { s->status, 1, true } };
			uint64_t blk, sector;
			int head;

			if (s->busy)
				continue;
			blk = seq ? next_seq++ % blocks : xorshift(&rng) % blocks;
			sector = blk * (bs / 512);
			memcpy(h, &type, 4);
			memset(h + 4, 0, 4);
			memcpy(h + 8, &sector, 8);
			head = vfront_add_chain_nokick(f, 0, b, 3, true);
			if (head < 0) {
				fprintf(stderr, "vhost-ceiling: ring full\n");
				return 1;
			}
			by_head[head] = s;
			s->busy = true;
			inflight++;
		}
		if (vfront_avail_idx(f, 0) != old && vfront_kick_needed(f, 0, old))
			vfront_kick(f, 0);
		if (inflight == 0)
			break;
		/* Reap: wait for one (an interrupt through used_event), then
		 * take whatever else is already there. */
		do {
			struct slot *s;

			if (vfront_wait_used(f, 0, &id, &len) < 0) {
				fprintf(stderr, "vhost-ceiling: no completion in 10 s\n");
				return 1;
			}
			seen++;
			s = id < QSIZE ? by_head[id] : NULL;
			if (!s || !s->busy || *(uint8_t *)vfront_ptr(f, s->status) != VIRTIO_BLK_S_OK) {
				fprintf(stderr, "vhost-ceiling: request failed\n");
				return 1;
			}
			s->busy = false;
			inflight--;
			ops++;
		} while (vfront_used_idx(f, 0) != seen);
		t1 = now_s();
	}
	c1 = proc_cpu_s(pid);
	printf("ops=%llu secs=%.3f iops=%.0f be_cpu_s=%.2f iops_per_core=%.0f\n",
	       (unsigned long long)ops, t1 - t0, (double)ops / (t1 - t0), c1 - c0,
	       c1 > c0 ? (double)ops / (c1 - c0) : 0.0);
	vfront_free(f);
	return 0;
}
