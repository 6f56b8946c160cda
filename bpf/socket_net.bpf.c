// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "socket": socket capture from the socket layer's own tracepoints (tp_btf), which
 * the kernel fires after each sendmsg/recvmsg on a socket (sock_send_length,
 * sock_recv_length: Linux 6.3+) and on each TCP state change (inet_sock_set_state).
 *
 * One program per transfer instead of an entry and a return per syscall, run only for socket
 * I/O: no task is put on the traced-syscall path (syscall tracepoints do that to every task
 * on the machine), nothing is kept between entry and return, and the struct sock comes with
 * the tracepoint instead of from a walk of the file table. The buffer is found from the
 * syscall in progress: its number and arguments are in the task's saved user registers.
 *
 * Program names are stp__<event>, unique within the kernel's 15 characters. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sock_capture.h"
#include "sock_syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "maps/traced_socks.h"

#define MSG_PEEK 2
#define SHUTDOWN_MASK 3 /* RCV_SHUTDOWN | SEND_SHUTDOWN */
/* A syscall that moves a socket's bytes without a buffer the program can read (x86-64), and
 * that FOR_EACH_SOCK_SYSCALL does not list: the socket may be its input or its output. */
#define NR_splice 275

/* The saved user registers of the syscall the current thread is in; 0 in an io_uring worker
 * or a kernel thread, whose registers are not a syscall's. */
static __always_inline struct pt_regs *syscall_regs(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & (PF_IO_WORKER | PF_KTHREAD))
		return 0;
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

/* What the syscall in progress moved `ret` bytes through, for a transfer in direction dir. A
 * syscall without a buffer (sendfile, splice), an io_uring worker or a
 * transfer in the other direction gives BUF_NONE: the length is reported, the bytes are not
 * read. The numbers are x86-64's; a 32-bit process's syscalls are numbered otherwise and
 * mostly come out as BUF_NONE. */
static __always_inline void describe_buffer(struct syscall_args *a, __u8 dir)
{
	a->buf_kind = BUF_NONE;
	struct pt_regs *regs = syscall_regs();
	if (!regs)
		return;
	__u8 kind = BUF_NONE;
	switch (regs->orig_ax) {
#define CASE(name, nr, k, d)                        \
	case nr:                                    \
		kind = (d) == dir ? (k) : BUF_NONE; \
		break;
		FOR_EACH_SOCK_SYSCALL(CASE)
#undef CASE
	default:
		return;
	}
	a->buf_kind = kind;
	a->buf = PT_REGS_PARM2(regs);
	a->count = PT_REGS_PARM3(regs);
}

/* The current thread is in a syscall that ends with a transfer tracepoint. */
static __always_inline int in_transfer_syscall(void)
{
	struct pt_regs *regs = syscall_regs();
	if (!regs)
		return 0;
	switch (regs->orig_ax) {
#define CASE(name, nr, k, d) case nr:
		FOR_EACH_SOCK_SYSCALL(CASE)
#undef CASE
	case NR_splice:
		return 1;
	}
	return 0;
}

/* Bytes the socket received that its process has not read yet. */
static __always_inline int unread(struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	return tp && tp->rcv_nxt != tp->copied_seq;
}

static __always_inline void send_end(struct sock *sk, struct sock_mark *m)
{
	__u64 owner = m->pid_tgid;
	bpf_sk_storage_delete(&traced_socks, sk);
	send_close(owner, sk);
}

/* A transfer of ret bytes (<= 0: none, or an error) on sk by the current thread. */
static __always_inline int on_transfer(struct sock *sk, int ret, __u8 dir)
{
	if (!sk)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	if (!is_tcp_btf(sk))
		return 0;
	struct sock_mark init = { .pid_tgid = id };
	struct sock_mark *m = bpf_sk_storage_get(&traced_socks, sk, &init, ret > 0 ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	/* start_ns 0: the syscall's entry is not seen here (see struct sock_event). */
	struct syscall_args a = { .sk = (__u64)sk, .direction = dir };
	long n = ret;
	__u8 flags = 0;
	/* Inside an OpenSSL call, even a failed read (EAGAIN) ties its SSL object to sk. */
	if (ssl_claim(id, &a, &n, &flags))
		n = 0;
	if (n > 0) {
		if (!flags)
			describe_buffer(&a, dir);
		emit_transfer(id, &a, n, flags);
	}
	if (m && m->ended && !unread(sk))
		send_end(sk, m);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(stp__send, struct sock *sk, int ret, int flags)
{
	return on_transfer(sk, ret, DIR_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(stp__recv, struct sock *sk, int ret, int flags)
{
	/* Peeked bytes come again with the read that takes them. */
	return on_transfer(sk, flags & MSG_PEEK ? 0 : ret, DIR_RECV);
}

/* A captured connection ends: its process closed it (close() leaves ESTABLISHED or CLOSE_WAIT
 * with both directions shut; a shutdown(SHUT_WR) alone shuts one, and the process may still
 * read), or it went to CLOSE (a reset, or the end of the FIN exchange), in whatever context
 * the kernel does that. Once per socket: the mark goes with the first. A reset the owner's
 * own sendmsg/recvmsg processes (from the socket's backlog, as it releases the socket) comes
 * before that transfer's tracepoint: the end is reported after the transfer, by it. So is a
 * close with bytes still unread (see below). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stp__state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && newstate != TCP_CLOSE)
		return 0;
	if (newstate != TCP_CLOSE && sk->sk_shutdown != SHUTDOWN_MASK)
		return 0;
	struct sock_mark *m = bpf_sk_storage_get(&traced_socks, sk, 0, 0);
	if (!m)
		return 0;
	/* sk_lock.owned: the current task holds the socket (process context), not softirq. */
	if (sk->sk_lock.owned && bpf_get_current_pid_tgid() >> 32 == m->pid_tgid >> 32 && in_transfer_syscall()) {
		m->ended = 1;
		return 0;
	}
	/* A client that shut its sending side first gets the answer and the FIN together: the
	 * socket closes (TIME_WAIT) before its process reads the answer. The end then comes
	 * after the read that takes the last bytes (a process that closes without reading them
	 * sends no more events: the decoder's idle expiry ends the connection). */
	if (newstate == TCP_CLOSE && unread(sk)) {
		m->ended = 1;
		return 0;
	}
	send_end(sk, m);
	return 0;
}
