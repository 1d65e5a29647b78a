/* SPDX-License-Identifier: GPL-2.0 */
/* maps.h - every map of the data path, one line each: what it holds, who writes it.
 *
 * With XG_PIN_DIR defined (a -D from the loader) the persistent maps are pinned
 * there and an existing pin is reused, so a restarted controller adopts the
 * running filter's flow table, policy and counters. The sample ring buffer is
 * not pinned: each controller brings its own.
 * Banked maps hold two policies; the active bank is config.gen & 1.
 */
#ifndef XDPGATE_MAPS_H
#define XDPGATE_MAPS_H

#include "xdpgate_types.h"
#include "parse.h"

#ifdef XG_PIN_DIR
#define XG_MAP(type, k, v, name, n, flags) \
	BPF_TABLE_PINNED7(type, k, v, name, n, XG_PIN_DIR "/" #name, flags)
#else
#define XG_MAP(type, k, v, name, n, flags) BPF_F_TABLE(type, k, v, name, n, flags)
#endif

/* run-time switches and the policy generation; controller */
XG_MAP("array", u32, struct xg_config, config, 1, 0);
/* policy header per bank; controller */
XG_MAP("array", u32, struct xg_policy, policy, 2, 0);
/* rule actions per bank (bank * XG_RULE_MAX + slot); controller */
XG_MAP("array", u32, struct xg_rule, rules, 2 * XG_RULE_MAX, 0);
/* rule bitmaps of proto/app/category/call/tunnel values and wildcards; controller */
XG_MAP("array", u32, struct xg_bits, fieldbits, 2 * XG_FB_SIZE, 0);
/* rule bitmaps per port (bank * XG_PORT_SLOTS + port); controller */
XG_MAP("array", u32, struct xg_portbits, portbits, 2 * XG_PORT_SLOTS, 0);
/* rule bitmaps per address class (bank * XG_ADDRCLASS_MAX + class); controller */
XG_MAP("array", u32, struct xg_addrclass, addrclass, 2 * XG_ADDRCLASS_MAX, 0);
/* rule bitmaps of rules naming a tunnel id; controller */
XG_MAP("hash", struct xg_tunid_key, struct xg_bits, tunid, 2048, 0);
/* IPv4 address classes per /24 (bank * XG_A4_WORDS + /24 / 4, 16 bits each); controller.
 * Mmapable, so the controller diffs a bank against what it holds without a copy of its own */
XG_MAP("array", u32, u64, addr4, 2 * XG_A4_WORDS, BPF_F_MMAPABLE);
/* IPv4 set prefixes and /24 base classes -> address class (a prefix and a base per
 * prefix at most); controller */
XG_MAP("hash", struct xg_pfx4_key, u32, pfx4, 2 * XG_LPM4_MAX, BPF_F_NO_PREALLOC);
/* IPv6 prefixes -> address class; controller */
XG_MAP("lpm_trie", struct xg_lpm6_key, u32, lpm6, XG_LPM6_MAX, BPF_F_NO_PREALLOC);
/* IPv6 address hint bits (bank * XG_HINT_WORDS + slot / 64): the trie is only walked for
 * addresses whose bit is set; controller */
XG_MAP("array", u32, u64, addrhint, 2 * XG_HINT_WORDS, 0);
/* the flow table's entries and its sets' way words (struct xg_flowset); data path (class
 * fields copied from the mailbox). Mmapable: such arrays start on a page, so a set is one
 * cache line and an entry three (plain arrays start 8 bytes into one), and the controller
 * maps them to list flows (control/flowtable.py) */
XG_MAP("array", u32, struct xg_flow_slot, flows, XG_FLOW_MAX, BPF_F_MMAPABLE);
XG_MAP("array", u32, struct xg_flowset, flowsets, XG_FLOW_SETS, BPF_F_MMAPABLE);
/* labels for flows, taken by the flow's next packet; controller writes, data path deletes */
XG_MAP("lru_hash", struct xg_flow_key, struct xg_class, mailbox, XG_MAILBOX_MAX, 0);
/* expected endpoints announced by SDP; controller */
XG_MAP("lru_hash", struct xg_expect_key, struct xg_expect, expect, XG_EXPECT_MAX, 0);
/* no expectation lives past this time (ktime ns): after it, new flows skip the expect
 * lookups; controller (raised with each expectation written) */
XG_MAP("array", u32, u64, expect_live, 1, 0);
/* packets/bytes by reason and verdict (reason * XG_V_MAX + verdict); data path */
XG_MAP("percpu_array", u32, struct xg_counter, counters, XG_R_MAX * XG_V_MAX, 0);
/* packets/bytes per rule slot, bank * (XG_RULE_MAX + 1) + slot, slot XG_RULE_MAX = default; data path */
XG_MAP("percpu_array", u32, struct xg_counter, rule_hits, 2 * (XG_RULE_MAX + 1), 0);
/* packets/bytes per app, category, tunnel type and call kind; data path */
XG_MAP("percpu_array", u32, struct xg_counter, dims, XG_D_SIZE, 0);
/* events (enum xg_event), pkts column used; data path */
XG_MAP("percpu_array", u32, struct xg_counter, events, XG_E_MAX, 0);
/* token buckets of rate-limited rules (bank * XG_RULE_MAX + slot); data path, reset by controller */
XG_MAP("array", u32, struct xg_bucket, buckets, 2 * XG_RULE_MAX, 0);

/* per-packet working space off the 512-byte stack, shared by the stages (pinned so
 * a running entry stage and a newer controller's later stages agree); data path */
struct xg_scratch {
	/* what every packet uses comes first, so it spans as few cache lines as it can */
	__u32 off; /* parser: offset of the next IP header */
	__s32 et;  /* parser: its ethertype */
	__u32 lvl; /* parser: tunnel level */
	__u32 pad;
	__u64 clk_j;  /* jiffies when clk_ns was read */
	__u64 clk_ns; /* bpf_ktime_get_coarse_ns() read at jiffy clk_j on this CPU */
	struct xg_pkt p;
	struct xg_flow_key key __attribute__((aligned(8))); /* hashed 8 bytes at a time */
	/* new flows and rule evaluation */
	struct xg_flow nf;
	struct xg_pfx4_key k4;
	struct xg_lpm6_key k6;
	struct xg_bits m; /* the rules still in the running (xg_eval) */
	struct xg_expect_key ek;
	/* a new flow's two sets and tag, parked while it is decided (see xg_decide) */
	__u32 f_set[2];
	__u32 f_tag;
	/* the decision, parked while a new flow takes its way and is sampled (see xg_decide) */
	__u32 d_slot;
	__u32 d_reason;
	__u32 d_action;
};
XG_MAP("percpu_array", u32, struct xg_scratch, scratch, 1, 0);

/* the program's later stages (XG_PROG_LEVEL, XG_PROG_DECIDE); loader. Pinned: the
 * kernel empties a program array when no process holds it, and the filter must keep
 * working after its controller exits */
XG_MAP("prog", u32, u32, progs, 4, 0);

/* samples of new flows' first packets for the classifier; data path -> controller */
BPF_RINGBUF_OUTPUT(samples, XG_RINGBUF_PAGES);

#endif
