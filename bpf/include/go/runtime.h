// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, runtime: goroutines inherit the request their creator serves. */
#ifndef __GO_RUNTIME_H
#define __GO_RUNTIME_H

/* runtime.newproc1 returns (RET sites) the new goroutine: it inherits what its creator
 * serves. newproc1 runs on the system stack (R14 is the thread's g0), so the creator is the
 * goroutine the thread runs, g0.m.curg. Only attached before go1.21, where g has no
 * parentGoid; one hit per goroutine started. */
SEC("uprobe")
int go_newproc1_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u64 m = 0, curg = 0;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)(ctx->r14 + o->g_m)) || !m)
		return 0;
	if (bpf_probe_read_user(&curg, sizeof(curg), (void *)(m + o->m_curg)) || !curg)
		return 0;
	struct go_request *r = serving(tgid, goid_of(o, curg));
	if (!r)
		return 0;
	struct go_request req = *r;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->ax) };
	if (k.goid)
		bpf_map_update_elem(&go_serving, &k, &req, BPF_ANY);
	return 0;
}

#endif /* __GO_RUNTIME_H */
