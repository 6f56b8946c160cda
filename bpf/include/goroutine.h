/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Goroutines, for the Go probes and the socket capture alike: a goroutine's id, the request it
 * serves, and which goroutine a Go thread's transfer comes from. In Go's register ABI (go1.17+,
 * amd64) R14 holds the running goroutine's g in Go code, and keeps it through a syscall made
 * from Go: a write's saved user registers name the goroutine that wrote, with no uprobe. */
#ifndef BEYLA_GOROUTINE_H
#define BEYLA_GOROUTINE_H

#include "events.h"
#include "maps/go_offsets.h"
#include "maps/go_serving.h"

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000
/* x86-64 kernel stacks (without KASAN); the saved user registers sit at their top. */
#define KERNEL_THREAD_SIZE 16384

static __always_inline __u64 goid_of(const struct go_offsets *o, __u64 g)
{
	__u64 goid = 0;
	if (g)
		bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + o->g_goid));
	return goid;
}

static __always_inline struct go_request *serving(__u32 tgid, __u64 goid)
{
	struct goroutine_key k = { .tgid = tgid, .goid = goid };
	return bpf_map_lookup_elem(&go_serving, &k);
}

/* What the goroutine g serves, or failing that (go1.21+, which records it) its creator. */
static __always_inline struct go_request *serving_of(const struct go_offsets *o, __u32 tgid, __u64 g, __u64 goid)
{
	struct go_request *r = serving(tgid, goid);
	if (r || !o->g_parent_goid || !g)
		return r;
	__u64 parent = 0;
	if (bpf_probe_read_user(&parent, sizeof(parent), (void *)(g + o->g_parent_goid)) || !parent)
		return 0;
	return serving(tgid, parent);
}

/* R14 of the current thread's saved user registers (0 for an io_uring worker or a kernel
 * thread, whose registers are not a syscall's). bpf_task_pt_regs where the kernel has it
 * (5.15+), else the top of the task's kernel stack, where x86-64 saves them. */
static __always_inline __u64 user_r14(void)
{
	__u64 regs = 0, r14 = 0;
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		struct task_struct *task = bpf_get_current_task_btf();
		if (task->flags & (PF_IO_WORKER | PF_KTHREAD))
			return 0;
		regs = (__u64)bpf_task_pt_regs(task);
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		if (BPF_CORE_READ(task, flags) & (PF_IO_WORKER | PF_KTHREAD))
			return 0;
		__u64 stack = (__u64)BPF_CORE_READ(task, stack);
		if (!stack)
			return 0;
		regs = stack + KERNEL_THREAD_SIZE - bpf_core_type_size(struct pt_regs);
	}
	if (!regs || bpf_probe_read_kernel(&r14, sizeof(r14), (void *)(regs + bpf_core_field_offset(struct pt_regs, r14))))
		return 0;
	return r14;
}

/* Records in e, a write of Go process e->pid whose probes' offsets are o, the request the
 * writing goroutine g serves (SOCK_FLAG_GOROUTINE: g was the goroutine the thread ran; the
 * server fields stay 0 when it serves none). g is checked to be its thread's current
 * goroutine (g.m.curg == g): R14 of a thread in C code (cgo) or on the system stack is not a
 * user goroutine. */
static __always_inline void note_goroutine(struct sock_event *e, const struct go_offsets *o, __u64 g)
{
	if (!g || !o->g_m || !o->m_curg)
		return;
	__u64 m = 0, curg = 0;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)(g + o->g_m)) || !m)
		return;
	if (bpf_probe_read_user(&curg, sizeof(curg), (void *)(m + o->m_curg)) || curg != g)
		return;
	__u64 goid = goid_of(o, g);
	if (!goid)
		return;
	e->flags |= SOCK_FLAG_GOROUTINE;
	struct go_request *r = serving_of(o, e->pid, g, goid);
	if (!r)
		return;
	e->go_server_sock = r->sock;
	e->go_server_stream = r->stream;
	e->go_handler_ns = r->handler_ns;
}

/* The same for a write of the current thread seen by the socket capture: a Go process's only. */
static __always_inline void note_writer_goroutine(struct sock_event *e)
{
	__u32 tgid = e->pid;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		note_goroutine(e, o, user_r14());
}

#endif
