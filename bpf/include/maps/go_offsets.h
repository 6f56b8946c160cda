/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tgid -> the struct offsets the Go probes read (struct go_offsets, events.h); only processes
 * the agent instrumented with the Go probes are present. Created by the capture family, which
 * reads it at every transfer (goroutine.h), and shared with the Go probes. */
#ifndef BEYLA_MAP_GO_OFFSETS_H
#define BEYLA_MAP_GO_OFFSETS_H

#include "events.h" /* struct go_offsets */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct go_offsets);
} go_offsets SEC(".maps");

#endif
