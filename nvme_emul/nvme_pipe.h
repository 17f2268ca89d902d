/* SPDX-License-Identifier: MIT */
/*
 * nvme_pipe.h: Read and Write data through a pipe instead of memory, for
 * a transport on a socket (nvmf/): the disk splices a file's pages into
 * the pipe and the transport splices them into the socket, or the
 * reverse (storage/disk.h, DISK_IO_PIPE). Not part of the embedding API
 * (not installed): guest memory is not a pipe.
 *
 * The rules:
 * - The transport offers a pipe for one command with
 *   nvmeemu_cmd_submit_pipe. A Read (opcode 02h) that fits the pipe
 *   on a namespace whose disk takes pipes leaves its data in the pipe
 *   and nothing in the transport's memory; any other command, or a Read
 *   the disk cannot do that way, moves its data through the data ops as
 *   usual. A Write (01h) offered a pipe takes its data from the pipe
 *   only: the transport has put all of it there (nvmeemu_cmd_pipe_ok
 *   says beforehand whether the disk takes it straight; if it does not
 *   by the time the command runs, the core reads the pipe into a bounce
 *   buffer: the transport's map must then answer -EOPNOTSUPP).
 * - After done, nvmeemu_cmd_piped is the byte count the command moved
 *   through the pipe: a Read's data length on success (0: it used
 *   memory, or failed), a Write's data length once it took the data (0
 *   when it failed: the disk may have taken any part). On anything else (a failed Read, a Write refused before it read the
 *   pipe) the pipe may hold bytes: the transport drains or closes it.
 */
#ifndef DISKSTACK_NVME_EMUL_NVME_PIPE_H
#define DISKSTACK_NVME_EMUL_NVME_PIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "nvme_emul/nvme.h"

/* nvmeemu_cmd_submit, with @pipe_fd (a Read: the write end of an empty
 * pipe; a Write: the read end; borrowed until done) offered for the
 * data. Read: @len is the most the host takes (its buffer: a Read of
 * more goes to the data ops, which refuse it as for any transfer too
 * small), @room the pipe's size (F_GETPIPE_SZ); the Read takes the pipe
 * when its bytes fit, counted from the start of the page its first byte
 * is in (a pipe holds one page, or part of one, per buffer). Write: the
 * pipe holds @len bytes, the host's data (@room unused); a command whose
 * blocks need more fails with Data SGL Length Invalid, as with too little
 * data in memory, and one that needs fewer takes them from the front. */
void nvmeemu_cmd_submit_pipe(struct nvmeemu_cmd *cmd, int pipe_fd, size_t len, size_t room);
/* After done: the bytes the command moved through its pipe. */
size_t nvmeemu_cmd_piped(const struct nvmeemu_cmd *cmd);
/* Whether a Read or Write of @cmd (its SQE and ctrl set) would go
 * through a pipe straight to the disk: an I/O command naming an active
 * namespace whose disk takes pipes. A hint: the namespace may change
 * before the command runs (see the rules). */
bool nvmeemu_cmd_pipe_ok(struct nvmeemu_cmd *cmd);

#endif
