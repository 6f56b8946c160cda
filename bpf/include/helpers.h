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

/* The struct sock behind fd in the current task, if fd is a TCP socket (IPv4 or IPv6). */
static __always_inline struct sock *tcp_sock_of_fd(int fd)
{
	if (fd < 0)
		return 0;
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

static __always_inline void read_conn_tuple(struct sock *sk, struct conn_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->family = family;
	t->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&t->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		__builtin_memset(t->local_addr, 0, 16);
		__builtin_memset(t->remote_addr, 0, 16);
		t->local_addr[10] = 0xff;
		t->local_addr[11] = 0xff;
		t->remote_addr[10] = 0xff;
		t->remote_addr[11] = 0xff;
		/* BPF_CORE_READ_INTO would copy sizeof(*dst) = 1 byte here. */
		bpf_core_read(&t->local_addr[12], 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(&t->remote_addr[12], 4, &sk->__sk_common.skc_daddr);
	}
}

#endif
