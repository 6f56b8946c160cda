// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "process": keeps traced_pids in step with process lifecycles. A child forked by a
 * traced process is traced from its first instruction (gunicorn workers, Node cluster), before
 * the agent's next /proc scan could see it; exec and exit of traced processes are reported so
 * the agent can re-evaluate or forget them. The agent shares this object's traced_pids map
 * with the capture families.
 *
 * proc_changes counts every change a /proc scan could see, for any process: fork, exec, exit,
 * and a TCP socket entering or leaving LISTEN (open_ports). While it stands still the agent's
 * discovery skips its scan instead of re-reading every process. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "events.h"
#include "maps/traced_pids.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} process_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} proc_changes SEC(".maps");

static __always_inline void changed(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&proc_changes, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void emit(__u8 kind, __u32 pid, __u32 ppid)
{
	struct process_event *e = bpf_ringbuf_reserve(&process_events, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->pid = pid;
	e->ppid = ppid;
	e->ts_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
}

SEC("raw_tp/sched_process_fork")
int raw_tp__fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 cpid = BPF_CORE_READ(child, pid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (cpid != ctgid) /* a new thread, not a new process */
		return 0;
	changed();
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	if (!pid_traced(ptgid))
		return 0;
	__u32 flags = TRACED_INHERITED;
	bpf_map_update_elem(&traced_pids, &ctgid, &flags, BPF_NOEXIST);
	emit(EVENT_PROC_FORK, ctgid, ptgid);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int tp__exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	changed();
	if (pid_traced(tgid))
		emit(EVENT_PROC_EXEC, tgid, 0);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tp__exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if ((__u32)id != tgid) /* a thread, not the group leader */
		return 0;
	/* From here /proc/<tgid>/exe no longer resolves: a scan already sees the process gone. */
	changed();
	if (bpf_map_delete_elem(&traced_pids, &tgid) == 0)
		emit(EVENT_PROC_EXIT, tgid, 0);
	return 0;
}

/* args: sk, oldstate, newstate. A listener starts (-> LISTEN) or closes (LISTEN -> CLOSE); a
 * connection accepted from it is a clone going LISTEN -> SYN_RECV, not counted. The kernel traces
 * LISTEN just before the socket is hashed, so a scan racing it can miss the port by microseconds:
 * the agent scans once more a poll later. */
SEC("raw_tp/inet_sock_set_state")
int raw_tp__sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 old = ctx->args[1], new = ctx->args[2];
	if (new == TCP_LISTEN || (old == TCP_LISTEN && new == TCP_CLOSE))
		changed();
	return 0;
}
