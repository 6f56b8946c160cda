// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "kprobes": socket capture from kprobes on the syscall entry points (libbpf's
 * ksyscall/kretsyscall resolve the arch wrapper, e.g. __x64_sys_read). Same data as the
 * tracepoint family, but only the hooked syscalls pay: syscall tracepoints put every task on
 * the slower traced-syscall path while any is attached.
 *
 * Program names are <ksys|kret>__<syscall>, unique within the kernel's 15 characters. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sock_capture.h"
#include "sock_syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ENTER(name, kind, dir)                                                         \
	SEC("ksyscall/" #name)                                                         \
	int BPF_KSYSCALL(ksys__##name, int fd, unsigned long buf, unsigned long count) \
	{                                                                              \
		return save_args(fd, buf, count, kind, dir);                           \
	}
#define EXIT(name)                                      \
	SEC("kretsyscall/" #name)                       \
	int BPF_KRETPROBE(kret__##name, long ret)       \
	{                                               \
		return emit_data(ret);                  \
	}

#define HOOKS(name, nr, kind, dir) ENTER(name, kind, dir) EXIT(name)
FOR_EACH_SOCK_SYSCALL(HOOKS)

SEC("ksyscall/close")
int BPF_KSYSCALL(ksys__close, int fd)
{
	return emit_close(fd);
}
