/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tgid -> flags of the processes the agent instruments. Written by the agent (discovery) and by
 * the process family (children of traced processes inherit). Every program checks it first. */
#ifndef BEYLA_MAP_TRACED_PIDS_H
#define BEYLA_MAP_TRACED_PIDS_H

#define TRACED_BY_AGENT 1   /* selected by discovery */
#define TRACED_INHERITED 2  /* forked from a traced process */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} traced_pids SEC(".maps");

static __always_inline int pid_traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced_pids, &tgid) != 0;
}

#endif
