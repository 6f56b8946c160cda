/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* HTTP/2 connections whose frames the capture follows (h2_walk.h), by struct sock address:
 * where each direction's byte stream stands in its current frame, carried from one transfer
 * to the next. Entered when a transfer starts with the client preface; removed on close, or
 * when the walk loses its place. LRU: a socket whose close was not seen cannot leak an entry. */
#ifndef BEYLA_MAP_H2_WALKS_H
#define BEYLA_MAP_H2_WALKS_H

#include "events.h" /* struct h2_dir_walk */

struct h2_walk {
	struct h2_dir_walk dir[2]; /* by enum direction */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct h2_walk);
} h2_walks SEC(".maps");

#endif
