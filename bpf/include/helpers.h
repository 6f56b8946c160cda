/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Helpers shared by the hook families. */
#ifndef BEYLA_HELPERS_H
#define BEYLA_HELPERS_H

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Set by the agent before load (ebpf.wakeup_len): wake the reader once per this many events
 * per CPU; 0 or 1 lets the kernel wake it for every event. */
const volatile __u32 wakeup_len = 0;
/* Set by the agent before load (a quarter of ebpf.ring_buffer_size): wake the reader early
 * when this much is waiting, so that no wakeup_len can fill a small ring; 0: no such check. */
const volatile __u32 wakeup_bytes = 0;

static __always_inline __u64 ringbuf_flags(void)
{
	if (wakeup_len <= 1)
		return 0;
	__u32 zero = 0;
	__u32 *pending = bpf_map_lookup_elem(&pending_wakeup, &zero);
	if (!pending)
		return 0;
	*pending += 1;
	if (*pending >= wakeup_len || (wakeup_bytes && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)) {
		*pending = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
	if (lost)
		*lost += 1;
}

/* Kernels with bpf_rdonly_cast (6.2+; libbpf resolves the weak kfunc at load time, and the
 * verifier drops the branch it leaves dead) let the programs load the fields on the way from
 * an fd to its socket directly (fault-safe loads of about a nanosecond) instead of one
 * bpf_probe_read_kernel helper call per field. Both paths read the same fields. */
#define HAVE_BTF_CAST bpf_ksym_exists(bpf_rdonly_cast)

/* sk (a pointer the verifier knows as a struct sock) is a TCP socket, IPv4 or IPv6. */
static __always_inline int is_tcp_btf(const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return sk->sk_type == SOCK_STREAM && sk->sk_protocol == IPPROTO_TCP;
}

static __always_inline struct sock *tcp_sock_of_fd_btf(int fd)
{
	struct task_struct *task = bpf_core_cast((void *)bpf_get_current_task(), struct task_struct);
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return 0;
	/* fdt->fd is a struct file ** the verifier only knows as a number. */
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]) || !f)
		return 0;
	struct file *file = bpf_core_cast(f, struct file);
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = bpf_core_cast(file->private_data, struct socket);
	struct sock *sk = sock->sk;
	if (!sk || !is_tcp_btf(sk))
		return 0;
	return sk;
}

/* The struct sock behind fd in the current task, if fd is a TCP socket (IPv4 or IPv6). */
static __always_inline struct sock *tcp_sock_of_fd(int fd)
{
	if (fd < 0)
		return 0;
	if (HAVE_BTF_CAST)
		return tcp_sock_of_fd_btf(fd);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return 0;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return sk;
}

/* IPv4 addresses go into the tuple as IPv4-mapped IPv6 (::ffff:a.b.c.d). */
static __always_inline void v4_mapped(__u8 *dst, __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(&dst[12], &addr, 4);
}

static __always_inline void read_conn_tuple_btf(struct sock *s, struct conn_tuple *t)
{
	struct sock_common *c = &bpf_core_cast(s, struct sock)->__sk_common;
	__u16 family = c->skc_family;
	t->family = family;
	t->local_port = c->skc_num;
	t->remote_port = bpf_ntohs(c->skc_dport);
	if (family == AF_INET6) {
		for (int i = 0; i < 4; i++) {
			__u32 l = c->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			__u32 r = c->skc_v6_daddr.in6_u.u6_addr32[i];
			__builtin_memcpy(&t->local_addr[i * 4], &l, 4);
			__builtin_memcpy(&t->remote_addr[i * 4], &r, 4);
		}
	} else {
		v4_mapped(t->local_addr, c->skc_rcv_saddr);
		v4_mapped(t->remote_addr, c->skc_daddr);
	}
}

static __always_inline void read_conn_tuple(struct sock *sk, struct conn_tuple *t)
{
	if (HAVE_BTF_CAST) {
		read_conn_tuple_btf(sk, t);
		return;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->family = family;
	t->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&t->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		v4_mapped(t->local_addr, 0);
		v4_mapped(t->remote_addr, 0);
		/* BPF_CORE_READ_INTO would copy sizeof(*dst) = 1 byte here. */
		bpf_core_read(&t->local_addr[12], 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(&t->remote_addr[12], 4, &sk->__sk_common.skc_daddr);
	}
}

#endif
