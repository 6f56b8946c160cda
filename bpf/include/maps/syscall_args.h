/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arguments of an in-flight socket syscall, saved at sys_enter and consumed at sys_exit of the
 * same thread. Kept in the thread's task storage where the kernel has it (5.11+: one slot per
 * thread, found without hashing and freed with the thread), else in an LRU hash keyed by
 * pid_tgid (LRU so a thread killed mid-syscall cannot leak an entry forever). The agent picks
 * one before load (args_in_task) and does not create the other map. */
#ifndef BEYLA_MAP_SYSCALL_ARGS_H
#define BEYLA_MAP_SYSCALL_ARGS_H

struct syscall_args {
	__u64 buf;  /* user pointer: buffer, iovec array or msghdr */
	__u64 count;
	__u64 sk;   /* struct sock * of fd, resolved at enter */
	__u64 start_ns; /* CLOCK_MONOTONIC at sys_enter */
	__s32 fd;
	__u8 buf_kind; /* enum buf_kind (sock_emit.h) */
	__u8 direction;
	__u8 valid; /* task storage only: set at enter, cleared when taken at exit */
	__u8 _pad;
};

/* Set by the agent before load: the kernel has task storage for tracing programs. */
const volatile bool args_in_task = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct syscall_args);
} syscall_args SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_args);
} syscall_args_task SEC(".maps");

/* Saves *a for this thread's sys_exit. */
static __always_inline void args_put(__u64 pid_tgid, const struct syscall_args *a)
{
	if (args_in_task) {
		struct syscall_args *slot = bpf_task_storage_get(&syscall_args_task, bpf_get_current_task_btf(), 0,
								 BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (slot) {
			*slot = *a;
			slot->valid = 1;
		}
		return;
	}
	bpf_map_update_elem(&syscall_args, &pid_tgid, a, BPF_ANY);
}

/* Takes what this thread's sys_enter saved into *a; 0 if nothing was saved. */
static __always_inline int args_take(__u64 pid_tgid, struct syscall_args *a)
{
	if (args_in_task) {
		struct syscall_args *slot = bpf_task_storage_get(&syscall_args_task, bpf_get_current_task_btf(), 0, 0);
		if (!slot || !slot->valid)
			return 0;
		*a = *slot;
		slot->valid = 0;
		return 1;
	}
	struct syscall_args *saved = bpf_map_lookup_elem(&syscall_args, &pid_tgid);
	if (!saved)
		return 0;
	*a = *saved;
	bpf_map_delete_elem(&syscall_args, &pid_tgid);
	return 1;
}

#endif
