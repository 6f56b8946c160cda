// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "tracepoints": socket capture from the syscall tracepoints. Works on every
 * kernel with tracefs, including those without kprobes or BPF trampolines; the fallback.
 *
 * Program names are <tpe|tpx>__<syscall> (tracepoint enter/exit) so they stay unique within
 * the kernel's 15-character limit. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sock_capture.h"
#include "sock_syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ENTER(name, kind, dir)                                                          \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                     \
	int tpe__##name(struct trace_event_raw_sys_enter *ctx)                          \
	{                                                                               \
		return save_args((int)ctx->args[0], ctx->args[1], ctx->args[2], kind, dir); \
	}
#define EXIT(name)                                                                      \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                      \
	int tpx__##name(struct trace_event_raw_sys_exit *ctx)                           \
	{                                                                               \
		return emit_data(ctx->ret);                                             \
	}

#define HOOKS(name, nr, kind, dir) ENTER(name, kind, dir) EXIT(name)
FOR_EACH_SOCK_SYSCALL(HOOKS)

SEC("tracepoint/syscalls/sys_enter_close")
int tpe__close(struct trace_event_raw_sys_enter *ctx)
{
	return emit_close((int)ctx->args[0]);
}
