/* SPDX-License-Identifier: GPL-2.0 */
/* xdpgate_consts.h - sizes, enums and wire constants shared by the data path and
 * mirrored in control/layout.py (tests/datapath/test_layout.py proves they agree).
 *
 * Sizes are #ifndef defaults so the loader can override them with -D; nothing
 * an operator types ever reaches the compiler except these numbers.
 */
#ifndef XDPGATE_CONSTS_H
#define XDPGATE_CONSTS_H

#ifndef XG_FLOW_MAX
#define XG_FLOW_MAX 262144 /* flow table entries; a multiple of XG_FLOW_WAYS */
#endif
/* The flow table is set-associative (struct xg_flowset): a flow's hash picks two sets of
 * XG_FLOW_WAYS entries each, and a new flow replaces an empty entry or the longest unseen
 * one of the two (its first set's on a tie). */
#define XG_FLOW_WAYS 8
#define XG_FLOW_SETS (XG_FLOW_MAX / XG_FLOW_WAYS)
#define XG_WAY_BUSY 2     /* way word of an entry being written (tags are odd, 0 = empty) */
#define XG_SEEN_SHIFT 20  /* ways are aged in units of 2^20 ns (about 1 ms) */
#define XG_HASH_MUL 0x9E3779B97F4A7C15ULL
#define XG_HASH_MUL2 0xD6E8FEB86659FD93ULL /* the second set's (any odd constant) */
#ifndef XG_RULE_MAX
#define XG_RULE_MAX 256 /* rule slots per policy bank; multiple of 64 */
#endif
#define XG_RULE_WORDS (XG_RULE_MAX / 64)
#ifndef XG_ADDRCLASS_MAX
#define XG_ADDRCLASS_MAX 4096 /* distinct set-membership classes per bank */
#endif
#ifndef XG_LPM4_MAX
#define XG_LPM4_MAX 2097152 /* IPv4 prefixes, both banks together */
#endif
#ifndef XG_LPM6_MAX
#define XG_LPM6_MAX 1048576 /* IPv6 prefixes, both banks together */
#endif
#ifndef XG_TUNNEL_DEPTH
#define XG_TUNNEL_DEPTH 1 /* tunnel levels opened: 0, 1 or 2 */
#endif
#ifndef XG_SAMPLE_BYTES
#define XG_SAMPLE_BYTES 1500 /* bytes of the (inner) IP packet copied per sample: a whole
			      * packet of a 1500-byte MTU (QUIC Initials, ClientHellos with
			      * post-quantum key shares, fill it) */
#endif
#ifndef XG_RINGBUF_PAGES
#define XG_RINGBUF_PAGES 2048 /* sample ring buffer size in pages (power of two) */
#endif
#ifndef XG_EXPECT_MAX
#define XG_EXPECT_MAX 65536 /* expected media endpoints (from SDP) */
#endif
#ifndef XG_MAILBOX_MAX
#define XG_MAILBOX_MAX 65536 /* class labels waiting for their flow's next packet */
#endif
#ifndef XG_IPV6_EXT_MAX
#define XG_IPV6_EXT_MAX 6 /* IPv6 extension headers walked before giving up */
#endif
#ifndef XG_GTP_EXT_MAX
#define XG_GTP_EXT_MAX 4 /* GTP-U extension headers walked before giving up */
#endif

#define XG_PROG_LEVEL 1  /* progs slot: one IP level of the parser */
#define XG_PROG_DECIDE 2 /* progs slot: flow, class and decision */
#define XG_MAX_HDR_OFF 512 /* an inner IP header further in than this is malformed */

#define XG_APP_MAX 1024
#define XG_CAT_MAX 16
#define XG_CALL_MAX 4
#define XG_TUN_MAX 8
#define XG_PORT_SLOTS 65537 /* 0..65535 plus XG_PORT_NONE for packets without ports */
#define XG_PORT_NONE 65536
#define XG_RULE_NONE 0xffff /* "no rule matched": the default action */

/* IPv4 addresses (control/addr4.py builds the table): one 16-bit entry per /24 and bank,
 * four to a u64 word. An entry without XG_A4_SPILL is the address class of the whole /24
 * (0: in no set); with it, bit len - 25 says prefixes of length len (25..32) lie in the
 * /24, and the pfx4 hash holds them and the /24's base class. */
#define XG_A4_WORDS (1 << 22) /* u64 words per bank */
#define XG_A4_SPILL 0x8000
#define XG_PFX_PREFIX 0
#define XG_PFX_BASE 1

/* IPv6 address hint (control/addrhint.py builds it): one bit per hashed /32, per bank,
 * set where some set prefix may hold the address */
#define XG_HINT_BITS 24
#define XG_HINT_WORDS (1 << (XG_HINT_BITS - 6)) /* u64 words per bank */
#define XG_HINT_MUL 0x9E3779B1 /* slot = (first 32 bits * MUL) mod 2^32 >> 8 */

/* Actions a rule, the default or the controller can ask for (policy encoding). */
enum xg_action {
	XG_ACT_ALLOW = 0,
	XG_ACT_DROP = 1,
	XG_ACT_REJECT = 2,     /* TCP RST / ICMP unreachable sent back (XDP_TX) */
	XG_ACT_RATE_LIMIT = 3, /* token bucket; what exceeds is dropped */
	XG_ACT_MAX = 4,
	XG_ACT_NONE = 0xff, /* no override */
};

/* What happened to the packet (counter column). */
enum xg_verdict {
	XG_V_PASS = 0,
	XG_V_DROP = 1,
	XG_V_TX = 2,
	XG_V_MAX = 3,
};

/* Why (counter row). */
enum xg_reason {
	XG_R_RULE = 0,            /* a policy rule matched */
	XG_R_DEFAULT = 1,         /* no rule matched */
	XG_R_FLOW = 2,            /* verdict written for this flow by the controller */
	XG_R_RATE_LIMIT = 3,      /* over a rate limit */
	XG_R_FRAGMENT = 4,        /* non-first IP fragment (no ports): fragment action */
	XG_R_UNPARSED = 5,        /* not IP (ARP, LLDP, ...): unparsed action */
	XG_R_MALFORMED = 6,       /* truncated or inconsistent L2/L3/L4 header */
	XG_R_TUNNEL_MALFORMED = 7, /* bad GTP-U/GRE/VXLAN header inside a tunnel */
	XG_R_FAIL_MODE = 8,       /* controller away and the flow still needs it */
	XG_R_REJECT_FALLBACK = 9, /* reject asked for but not possible (tunnel, fragment): dropped */
	XG_R_INTERNAL = 10,       /* the decision stage could not run (tail call failed) */
	XG_R_MAX = 11,
};

/* Tunnel types (flow key, counters, `tunnel:` match). */
enum xg_tunnel {
	XG_TUN_NONE = 0,
	XG_TUN_GTPU = 1,
	XG_TUN_GRE = 2,
	XG_TUN_VXLAN = 3,
	XG_TUN_IPIP = 4,
};

/* Flow flags (struct xg_flow.flags). */
enum xg_flow_flag {
	XG_FF_CLASSIFIED = 1, /* class fields hold the controller's label */
	XG_FF_EXPECTED = 2,   /* labelled at creation from an expectation (SDP) */
	XG_FF_SAMPLE_LOST = 4, /* a sample of this flow was lost (ring buffer full) */
	XG_FF_KEEP_SAMPLING = 8, /* labelled, but the controller wants its first packets still */
	XG_FF_SAMPLED = 16,   /* a sample reached the ring buffer: a label may be in the mailbox */
};

/* Class flags (struct xg_class.flags). */
enum xg_class_flag {
	XG_CF_KEEP_SAMPLING = 1, /* e.g. SIP: the SDP of later messages announces media */
};

/* Events (events map): things worth counting that are not packet verdicts. */
enum xg_event {
	XG_E_FLOW_NEW = 0,      /* flow entries created */
	XG_E_SAMPLE_SENT = 1,   /* samples handed to the controller */
	XG_E_SAMPLE_LOST = 2,   /* samples lost: ring buffer full (the packet is unaffected) */
	XG_E_CLASS_APPLIED = 3, /* labels taken from the mailbox into a flow */
	XG_E_EXPECT_HIT = 4,    /* new flows labelled from an expectation */
	XG_E_REJECT_SENT = 5,   /* TCP RST / ICMP unreachable sent */
	XG_E_SAMPLE_BARE = 6,   /* TCP segments without payload counted in a flow's sample
				 * budget but not sampled (nothing there to classify) */
	XG_E_FLOW_EVICTED = 7,  /* flow entries replaced by a new flow (its set was full) */
	XG_E_FLOW_NOSLOT = 8,   /* new flows left out of the table: every way of their set was
				 * being written by another CPU (the packet is decided all the same) */
	XG_E_DROP_UNTRACKED = 9, /* first packets dropped without a flow entry (policy:
				  * stateless_drops) */
	XG_E_MAX = 16,
};

/* Per-dimension counters (dims map): index = region + id. */
#define XG_D_APP 0
#define XG_D_CAT (XG_D_APP + XG_APP_MAX)
#define XG_D_TUN (XG_D_CAT + XG_CAT_MAX)
#define XG_D_CALL (XG_D_TUN + XG_TUN_MAX)
#define XG_D_SIZE (XG_D_CALL + XG_CALL_MAX)

/* Rate-limit units and scope (struct xg_rule). */
enum xg_rl {
	XG_RL_BPS = 1,
	XG_RL_PPS = 2,
	XG_RL_PER_RULE = 0,
	XG_RL_PER_FLOW = 1,
};

/* Wildcard masks: rules with no condition on a field (fieldbits region XG_FB_WILD). */
enum xg_wild {
	XG_W_VALID = 0, /* every rule slot in use */
	XG_W_PROTO = 1,
	XG_W_SPORT = 2,
	XG_W_DPORT = 3,
	XG_W_APORT = 4,
	XG_W_APP = 5,
	XG_W_CAT = 6,
	XG_W_CALL = 7,
	XG_W_TUN = 8,
	XG_W_TUNID = 9,
	XG_W_CLASS = 10, /* rules that match app, category or call (need the classifier) */
	XG_W_MAX = 16,
};

/* fieldbits regions, one bank (index = bank * XG_FB_SIZE + region + value). */
#define XG_FB_PROTO 0
#define XG_FB_APP (XG_FB_PROTO + 256)
#define XG_FB_CAT (XG_FB_APP + XG_APP_MAX)
#define XG_FB_CALL (XG_FB_CAT + XG_CAT_MAX)
#define XG_FB_TUN (XG_FB_CALL + XG_CALL_MAX)
#define XG_FB_WILD (XG_FB_TUN + XG_TUN_MAX)
#define XG_FB_SIZE (XG_FB_WILD + XG_W_MAX)

#endif
