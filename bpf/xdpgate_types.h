/* SPDX-License-Identifier: GPL-2.0 */
/* xdpgate_types.h - every struct that crosses between the data path and Python.
 *
 * Rules: whole fields only (no bitfields), explicit padding, sizes multiples of 8.
 * Byte order is in the comment of each field; addresses are 16 bytes, IPv4 as
 * ::ffff:a.b.c.d. control/layout.py mirrors this file field by field.
 */
#ifndef XDPGATE_TYPES_H
#define XDPGATE_TYPES_H

#include "xdpgate_consts.h"

/* Canonical bidirectional flow key: endpoint a is the lower (addr, port) pair, so
 * both directions of a flow land in one entry. Tunnelled packets are keyed by the
 * inner 5-tuple plus the innermost tunnel's type and id. */
struct xg_flow_key {
	__u8 addr_a[16];
	__u8 addr_b[16];
	__u16 port_a; /* network order; 0 when the protocol has no ports */
	__u16 port_b; /* network order */
	__u8 proto;   /* IPPROTO_* of the (inner) packet */
	__u8 tun_type; /* enum xg_tunnel */
	__u16 pad;
	__u32 tun_id; /* host order: TEID, GRE key, VNI; 0 if none */
};

/* A flow table entry. Written by the data path, except the class fields, which
 * the data path copies from the class mailbox the controller writes. */
struct xg_flow {
	/* what every packet reads or writes: with the key, the first two cache lines of the
	 * entry (struct xg_flow_slot) */
	__u64 last_ns;  /* coarse clock (ns) of the last packet */
	__u64 pkts[2];  /* [0] sent by the initiator, [1] sent to it */
	__u64 bytes[2]; /* frame bytes */
	__u32 pol_gen;  /* policy generation the cached verdicts belong to (0 = none) */
	__u16 rule[2];  /* cached rule slot per direction, XG_RULE_NONE = default */
	__u8 action[2]; /* cached enum xg_action per direction */
	__u8 tcp_flags[2]; /* TCP flags seen, per direction */
	__u8 init_is_a; /* 1 if the initiator is endpoint a of the key */
	__u8 flags;     /* enum xg_flow_flag */
	__u8 nsampled;  /* packets of the sample budget used (sampled or bare TCP) */
	__u8 category;  /* class: category id (0 = unknown) */
	__u16 app;      /* class: app id (0 = unknown) */
	__u8 call;      /* class: call kind (0 none, 1 app, 2 pstn) */
	__u8 override;  /* controller verdict (enum xg_action) or XG_ACT_NONE */
	__u32 pad;
	/* the rest: new flows, rate limits, tunnels */
	__u64 first_ns; /* coarse clock (ns) of the first packet */
	__u64 tb_tokens; /* per-flow token bucket (rate_limit per: flow), tokens * 1e9 */
	__u64 tb_last_ns; /* with tb_tokens, read as a struct xg_bucket: keep them together */
	__u8 outer_a[16]; /* outermost addresses of a tunnelled flow (display) */
	__u8 outer_b[16];
};

/* The flow table: flows[set * XG_FLOW_WAYS + way] is an entry, flowsets[set] holds a
 * word per way: bits 0-31 the tag (the low half of the flow's hash with bit 0 set; 0 =
 * empty; XG_WAY_BUSY = being written), bits 32-63 when the way's flow was last seen
 * (clock >> XG_SEEN_SHIFT). A flow lives in one of two sets, both picked by its hash
 * (bpf/flowhash.h). control/flowtable.py reads and writes the table with the same hash. */
struct xg_flow_slot {
	struct xg_flow_key key;
	__u32 pad;
	struct xg_flow val;
	__u8 spare[24]; /* to three cache lines (the arrays are page-aligned: BPF_F_MMAPABLE) */
};

struct xg_flowset {
	__u64 way[XG_FLOW_WAYS];
};

/* A label from the controller, left in the mailbox keyed by the flow key. */
struct xg_class {
	__u16 app;
	__u8 category;
	__u8 call;
	__u8 override; /* enum xg_action, or XG_ACT_NONE */
	__u8 confidence; /* percent */
	__u16 flags;     /* XG_CF_* */
};

/* An expected endpoint (media announced by SDP): a new flow whose either
 * endpoint matches is labelled from its first packet. */
struct xg_expect_key {
	__u8 addr[16];
	__u16 port; /* network order */
	__u8 proto;
	__u8 tun_type;
	__u32 tun_id;
};

struct xg_expect {
	__u64 expires_ns; /* bpf_ktime_get_ns() clock */
	struct xg_class cls;
};

/* IPv4 prefixes of the address sets, by exact key (the per-/24 table, XG_A4_*, says which
 * lengths to try): kind XG_PFX_PREFIX is a set prefix of any length; kind XG_PFX_BASE is
 * the class of a /24 that holds longer prefixes, for its addresses outside them. addr is in
 * network order with the bits past len cleared. The value is an address class. */
struct xg_pfx4_key {
	__u8 bank;
	__u8 len;
	__u8 kind;
	__u8 pad;
	__u32 addr;
};

/* LPM key for the IPv6 sets. The first data byte is the policy bank, so a lookup is for
 * prefixlen 8 + 128. The value is an address class. */
struct xg_lpm6_key {
	__u32 prefixlen;
	__u8 bank;
	__u8 addr[16];
	__u8 pad[3];
};

/* A set of rule slots. */
struct xg_bits {
	__u64 w[XG_RULE_WORDS];
};

/* Rules an address of a given class satisfies, by role. */
struct xg_addrclass {
	struct xg_bits src;  /* rules whose src/src_set holds the address, or have none */
	struct xg_bits dst;  /* same for dst/dst_set */
	struct xg_bits any;  /* rules whose ip/ip_set holds it (either endpoint), or have none */
	struct xg_bits osrc; /* outer_src */
	struct xg_bits odst; /* outer_dst */
};

/* Rules a port satisfies, by role. */
struct xg_portbits {
	struct xg_bits src;
	struct xg_bits dst;
	struct xg_bits any;
};

/* Key of the tunnel_id match (rules that name tunnel ids). */
struct xg_tunid_key {
	__u32 bank;
	__u32 tun_id;
};

struct xg_rule {
	__u8 action;  /* enum xg_action */
	__u8 rl_unit; /* XG_RL_BPS / XG_RL_PPS, 0 when not rate limited */
	__u8 rl_per;  /* XG_RL_PER_RULE / XG_RL_PER_FLOW */
	__u8 pad[5];
	__u64 rl_rate;  /* tokens (bytes or packets) per second */
	__u64 rl_burst; /* bucket depth, tokens */
};

/* Token bucket of a rate-limited rule (per: rule). */
struct xg_bucket {
	__u64 tokens; /* tokens * 1e9 (signed while takes race: tb_take) */
	__u64 last_ns;
};

/* Per-bank policy header. */
struct xg_policy {
	__u8 default_action;  /* enum xg_action (allow/drop) */
	__u8 frag_action;     /* non-first fragments */
	__u8 unparsed_action; /* non-IP frames and malformed headers */
	__u8 tunnels;         /* bit (1 << XG_TUN_*) set: open that tunnel type */
	__u8 flow_first;      /* 1: a controller flow verdict beats the rules */
	__u8 stateless;       /* 1: a new flow's drop that no label could change leaves no entry */
	__u16 class_rule_min; /* the first rule naming app, category or call; XG_RULE_NONE if none */
	__u32 nrules;
	__u32 fields;         /* bit 1 << XG_W_*: some rule has a condition on that field */
};

/* Run-time switches (one entry). The controller writes it whole. */
struct xg_config {
	__u32 gen;          /* policy generation; active bank = gen & 1 */
	__u32 sample_pkts;  /* samples per new flow; 0 disables sampling */
	__u64 heartbeat_ns; /* controller's last sign of life (bpf_ktime clock) */
	__u64 away_ns;      /* controller is away when the heartbeat is older than this */
	__u8 fail_closed;   /* 1: while away, drop flows whose verdict needs the classifier */
	__u8 pad[7];
	__u64 flow_seed;    /* seed of the flow hash; set once when the flow table is made */
};

/* A counter cell. */
struct xg_counter {
	__u64 pkts;
	__u64 bytes;
};

/* A sample of a new flow's packet, handed to the controller via the ring buffer. */
struct xg_sample_hdr {
	__u64 ts_ns;     /* bpf_ktime_get_ns() */
	struct xg_flow_key key;
	__u32 ifindex;
	__u32 wire_len;  /* length of the (inner) IP packet on the wire */
	__u16 cap_len;   /* bytes of it in data[] */
	__u8 dir;        /* 0 sent by the initiator, 1 towards it */
	__u8 seq;        /* packet number within the flow, from 0 (bare TCP segments count) */
	__u8 outer_src[16]; /* outermost addresses (equal to the inner ones if not tunnelled) */
	__u8 outer_dst[16];
};

struct xg_sample {
	struct xg_sample_hdr hdr;
	__u8 data[XG_SAMPLE_BYTES]; /* the (inner) IP packet, from its first byte */
};

#endif
