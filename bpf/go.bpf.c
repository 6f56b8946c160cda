// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "go": uprobes in Go executables that tell the agent which request a goroutine
 * is serving when it makes an HTTP or gRPC client call (bpf/include/events.h,
 * struct go_event). The socket capture families still capture the bytes.
 *
 * Attached per process by the agent (agent/src/attach/go.rs) at function entries and, for
 * returns, at the RET instructions it found by disassembly: never uretprobes, which break
 * when Go moves a goroutine's stack. Go's register ABI (go1.17+, amd64): arguments in
 * RAX, RBX, RCX, ..., results in RAX, ...; the current goroutine's g in R14. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "events.h"
#include "maps/events.h"
#include "helpers.h"
#include "sock_emit.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One header per Go library (bpf/include/go/), in dependency order. */
#include "go/common.h"
#include "go/traceparent.h"
#include "go/runtime.h"
#include "go/h2_headers.h"
#include "go/net_http.h"
#include "go/grpc.h"
#include "go/tls.h"
