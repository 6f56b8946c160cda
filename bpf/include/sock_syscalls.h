/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The syscalls every socket capture family understands, in one list:
 * X(name, x86-64 syscall number, buffer kind, direction). The syscall families hook one entry
 * and one return per row; the socket family reads the number of the syscall in progress and
 * looks its buffer up by it. sendfile's bytes come from a file: only their count is reported,
 * which keeps the messages after them in their place (Apache and Tomcat send static files so);
 * its first argument is the socket, as for the others. */
#ifndef BEYLA_SOCK_SYSCALLS_H
#define BEYLA_SOCK_SYSCALLS_H

#define FOR_EACH_SOCK_SYSCALL(X)                 \
	X(read, 0, BUF_PLAIN, DIR_RECV)          \
	X(recvfrom, 45, BUF_PLAIN, DIR_RECV)     \
	X(readv, 19, BUF_IOVEC, DIR_RECV)        \
	X(recvmsg, 47, BUF_MSGHDR, DIR_RECV)     \
	X(write, 1, BUF_PLAIN, DIR_SEND)         \
	X(sendto, 44, BUF_PLAIN, DIR_SEND)       \
	X(writev, 20, BUF_IOVEC, DIR_SEND)       \
	X(sendmsg, 46, BUF_MSGHDR, DIR_SEND)     \
	X(sendfile64, 40, BUF_NONE, DIR_SEND)

#endif
