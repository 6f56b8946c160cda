// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "fentry": socket capture from BPF trampolines on the x86-64 syscall entry points
 * (__x64_sys_*). The cheapest hooks where the kernel has trampolines, and fexit sees the
 * return value without kretprobe's per-CPU instance limit.
 *
 * Program names are <fe|fx>__<syscall>, unique within the kernel's 15 characters. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sock_capture.h"
#include "sock_syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ENTER(name, kind, dir)                                                             \
	SEC("fentry/__x64_sys_" #name)                                                     \
	int BPF_PROG(fe__##name, struct pt_regs *regs)                                     \
	{                                                                                  \
		return save_args((int)PT_REGS_PARM1_CORE_SYSCALL(regs), PT_REGS_PARM2_CORE_SYSCALL(regs), \
				 PT_REGS_PARM3_CORE_SYSCALL(regs), kind, dir);                     \
	}
#define EXIT(name)                                                 \
	SEC("fexit/__x64_sys_" #name)                              \
	int BPF_PROG(fx__##name, struct pt_regs *regs, long ret)   \
	{                                                          \
		return emit_data(ret);                             \
	}

#define HOOKS(name, nr, kind, dir) ENTER(name, kind, dir) EXIT(name)
FOR_EACH_SOCK_SYSCALL(HOOKS)

SEC("fentry/__x64_sys_close")
int BPF_PROG(fe__close, struct pt_regs *regs)
{
	return emit_close((int)PT_REGS_PARM1_CORE_SYSCALL(regs));
}
