/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The syscalls every socket capture family hooks, in one list: X(name, buffer kind, direction).
 * A family defines how to hook one entry and one return, then expands this list. */
#ifndef BEYLA_SOCK_SYSCALLS_H
#define BEYLA_SOCK_SYSCALLS_H

#define FOR_EACH_SOCK_SYSCALL(X)              \
	X(read, BUF_PLAIN, DIR_RECV)          \
	X(recvfrom, BUF_PLAIN, DIR_RECV)      \
	X(readv, BUF_IOVEC, DIR_RECV)         \
	X(recvmsg, BUF_MSGHDR, DIR_RECV)      \
	X(write, BUF_PLAIN, DIR_SEND)         \
	X(sendto, BUF_PLAIN, DIR_SEND)        \
	X(writev, BUF_IOVEC, DIR_SEND)        \
	X(sendmsg, BUF_MSGHDR, DIR_SEND)

#endif
