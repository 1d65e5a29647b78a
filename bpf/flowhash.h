/* SPDX-License-Identifier: GPL-2.0 */
/* flowhash.h - the flow table's hash and key comparison (maps-free).
 *
 * The hash is a seeded multiply-xor over the key's five 8-byte words and its tunnel id:
 * a few cycles a word, where the kernel hash map's jhash of the 44-byte key and its call
 * cost ~20 ns a lookup here. (NH over 32-bit words, six independent multiplies, measured no
 * faster: its extra loads and masks cost what the shorter chain saves.) The seed is random
 * per flow table (config.flow_seed), so which flows share a set cannot be worked out from
 * outside. control/flowtable.py computes the same function.
 */
#ifndef XDPGATE_FLOWHASH_H
#define XDPGATE_FLOWHASH_H

#include "xdpgate_types.h"

static __always_inline __u64 xg_hash_mix(__u64 h, __u64 v)
{
	h ^= v;
	h *= XG_HASH_MUL;
	return h ^ (h >> 31);
}

/* k must be 8-byte aligned */
static __always_inline __u64 xg_flow_hash(const struct xg_flow_key *k, __u64 seed)
{
	const __u64 *w = (const __u64 *)k;
	__u64 h = seed;
#pragma unroll
	for (int i = 0; i < 5; i++)
		h = xg_hash_mix(h, w[i]);
	return xg_hash_mix(h, k->tun_id);
}

/* the first set of a hash: its high half scaled to the number of sets (any count, no
 * modulo) */
static __always_inline __u32 xg_flow_set(__u64 h)
{
	return (__u32)(((h >> 32) * (__u64)XG_FLOW_SETS) >> 32);
}

/* The second set: the same of the hash multiplied once more, so it does not follow from
 * the first. Two choices keep the sets' loads close to their mean, where one choice leaves
 * some sets crowded and evicting live flows while others stand half empty. */
static __always_inline __u32 xg_flow_set2(__u64 h)
{
	return xg_flow_set(h * XG_HASH_MUL2);
}

static __always_inline __u32 xg_flow_tag(__u64 h)
{
	return (__u32)h | 1;
}

/* (xdpgate.c names its scratch key `key`, so the slot's is reached through this) */
static __always_inline struct xg_flow_key *xg_slot_key(struct xg_flow_slot *s)
{
	return &s->key;
}

/* both must be 8-byte aligned */
static __always_inline int xg_key_eq(const struct xg_flow_key *a, const struct xg_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 d = (__u64)(a->tun_id ^ b->tun_id);
#pragma unroll
	for (int i = 0; i < 5; i++)
		d |= x[i] ^ y[i];
	return !d;
}

#endif
