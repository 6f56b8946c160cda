/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arguments of an in-flight socket syscall, saved at sys_enter and consumed at sys_exit, keyed by
 * pid_tgid. LRU so a thread killed mid-syscall cannot leak an entry forever. */
#ifndef BEYLA_MAP_SYSCALL_ARGS_H
#define BEYLA_MAP_SYSCALL_ARGS_H

enum buf_kind {
	BUF_PLAIN = 0, /* read/write/recvfrom/sendto: buf, len */
	BUF_IOVEC = 1, /* readv/writev: iov, iovcnt */
	BUF_MSGHDR = 2, /* recvmsg/sendmsg: struct user_msghdr * */
};

struct syscall_args {
	__u64 buf;  /* user pointer: buffer, iovec array or msghdr */
	__u64 count;
	__u64 sk;   /* struct sock * of fd, resolved at enter */
	__u64 start_ns; /* CLOCK_MONOTONIC at sys_enter */
	__s32 fd;
	__u8 buf_kind;
	__u8 direction;
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct syscall_args);
} syscall_args SEC(".maps");

#endif
