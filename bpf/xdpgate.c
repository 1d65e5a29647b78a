/* SPDX-License-Identifier: GPL-2.0 */
/* xdpgate.c - the XDP program: parse -> flow -> class -> decide -> exit.
 *
 * Decision order for a packet:
 *   1. frames that are not IP, or malformed: the policy's unparsed action;
 *      non-first fragments (no ports): the fragment action.
 *   2. the flow entry is updated (a first packet's entry is built in scratch; an
 *      expectation from SDP may label it at once) and a pending label is taken from
 *      the mailbox.
 *   3. a controller verdict for the flow, when the policy puts flows first;
 *      otherwise the rules, evaluated once per flow direction and policy
 *      generation (the result is cached in the flow entry): each field value is
 *      looked up once to a bitmap of the rules it satisfies, the bitmaps are
 *      intersected and the lowest set bit is the first matching rule, so the cost
 *      does not depend on the number of rules.
 *   4. a first packet's entry takes its place in the table, unless the policy's
 *      stateless drops leave it out; then the first packets of an unlabelled flow
 *      are sampled to the controller, and the verdict is carried out.
 */
#include <uapi/linux/bpf.h>

#include "parse.h"
#include "flowhash.h"
#include "maps.h"
#include "reject.h"

/* Accounting. bcc rewrites map calls only in this file, so every map access is
 * here and the headers hold maps-free code. Every packet leaves through xg_exit(). */
static __always_inline void xg_count(void *map_lookup_result, __u64 bytes)
{
	struct xg_counter *c = map_lookup_result;
	if (c) {
		c->pkts++;
		c->bytes += bytes;
	}
}

static __always_inline void xg_event(__u32 ev)
{
	struct xg_counter *c = events.lookup(&ev);
	if (c)
		c->pkts++;
}

/* Record verdict and reason, return the XDP action. */
static __always_inline int xg_exit(__u32 verdict, __u32 reason, __u64 bytes)
{
	__u32 idx = reason * XG_V_MAX + verdict;
	xg_count(counters.lookup(&idx), bytes);
	if (verdict == XG_V_DROP)
		return XDP_DROP;
	if (verdict == XG_V_TX)
		return XDP_TX;
	return XDP_PASS;
}


static __always_inline __u32 xg_ctz64(__u64 x)
{
	__u32 n = 0;
	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffff)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xff)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xf)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1))
		n += 1;
	return n;
}

/* The rules still in the running, a word per 64 slots (kept in scratch: as locals they
 * would not fit in the stack), narrowed to a field's: m &= x | y. */
static __always_inline void bits_and(__u64 *m, struct xg_bits *x, struct xg_bits *y)
{
#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++)
		m[i] &= x->w[i] | y->w[i];
}

static __always_inline __u64 bits_any(const __u64 *m)
{
	__u64 any = 0;
#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++)
		any |= m[i];
	return any;
}

static __always_inline struct xg_bits *fb(__u32 bank, __u32 idx)
{
	__u32 k = bank * XG_FB_SIZE + idx;
	return fieldbits.lookup(&k);
}

/* m &= x | (wildcard bitmap w); -1 when the wildcard bitmap is missing (it never is). */
static __always_inline int wild_and(__u64 *m, struct xg_bits *x, __u32 bank, __u32 w)
{
	struct xg_bits *y = fb(bank, XG_FB_WILD + w);
	if (!y)
		return -1;
	bits_and(m, x, y);
	return 0;
}

/* m &= (bitmap of the field value at fieldbits idx) | (the field's wildcard bitmap w). */
static __always_inline int field_and(__u64 *m, __u32 bank, __u32 idx, __u32 w)
{
	struct xg_bits *x = fb(bank, idx);
	return x ? wild_and(m, x, bank, w) : -1;
}

/* 0 when no IPv6 set prefix can hold the address: its hint bit is clear. */
static __always_inline int hint_may(__u32 bank, __u32 slot)
{
	__u32 k = bank * XG_HINT_WORDS + (slot >> 6);
	__u64 *w = addrhint.lookup(&k);
	return w && ((*w >> (slot & 63)) & 1);
}

/* Address class of an IPv4 address (host order): its /24's entry, or, where the /24
 * holds longer prefixes, the longest of them that matches, else the /24's base. */
static __always_inline __u32 addr4_class(struct xg_scratch *sc, __u32 bank, __u32 a)
{
	__u32 slot = a >> 8;
	__u32 k = bank * XG_A4_WORDS + (slot >> 2);
	__u64 *w = addr4.lookup(&k);
	if (!w)
		return 0;
	__u32 e = (*w >> ((slot & 3) * 16)) & 0xffff;
	if (!(e & XG_A4_SPILL))
		return e;
	struct xg_pfx4_key *pk = &sc->k4;
	__u32 *v;
	pk->bank = bank;
	pk->kind = XG_PFX_PREFIX;
	pk->pad = 0;
#pragma unroll
	for (int len = 32; len > 24; len--) {
		if (e & (1 << (len - 25))) {
			pk->len = len;
			pk->addr = bpf_htonl(a & (0xffffffffU << (32 - len)));
			v = pfx4.lookup(pk);
			if (v)
				return *v;
		}
	}
	pk->kind = XG_PFX_BASE;
	pk->len = 24;
	pk->addr = bpf_htonl(a & 0xffffff00U);
	v = pfx4.lookup(pk);
	return v ? *v : 0;
}

/* Address class of an address (0 when it is in no set). */
static __always_inline __u32 addr_class(struct xg_scratch *sc, __u32 bank, __u32 *a)
{
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff))
		return addr4_class(sc, bank, bpf_ntohl(a[3]));
	if (!hint_may(bank, (__u32)(bpf_ntohl(a[0]) * XG_HINT_MUL) >> (32 - XG_HINT_BITS)))
		return 0;
	struct xg_lpm6_key *k = &sc->k6;
	k->prefixlen = 8 + 128;
	k->bank = bank;
	__builtin_memcpy(k->addr, a, 16);
	__u32 *v = lpm6.lookup(k);
	return v ? *v : 0;
}

static __always_inline struct xg_addrclass *addr_bits(struct xg_scratch *sc, __u32 bank, __u32 *a)
{
	__u32 c = addr_class(sc, bank, a);
	if (c >= XG_ADDRCLASS_MAX)
		c = 0;
	__u32 k = bank * XG_ADDRCLASS_MAX + c;
	return addrclass.lookup(&k);
}

static __always_inline struct xg_portbits *port_bits(__u32 bank, struct xg_pkt *p, int dst)
{
	__u32 port = XG_PORT_NONE;
	if (p->has_ports)
		port = bpf_ntohs(dst ? p->dport : p->sport);
	__u32 k = bank * XG_PORT_SLOTS + port;
	return portbits.lookup(&k);
}

/* First rule matching the packet in this direction, or XG_RULE_NONE. A field no rule has
 * a condition on (pol->fields) is not looked at: its wildcard bitmap holds every rule. A
 * field's bitmap of a value and its wildcard bitmap are array entries that always exist
 * (the checks are the verifier's); the tunnel id's bitmap, a hash entry, may not. */
static __always_inline __u32 xg_eval(struct xg_scratch *sc, struct xg_policy *pol, __u32 bank,
				     struct xg_flow *f)
{
	struct xg_pkt *p = &sc->p;
	struct xg_bits *x, *y;
	__u64 *m = sc->m.w;
	__u32 named = pol->fields;
#define NAMED(w) (named & (1U << XG_W_##w))

	x = fb(bank, XG_FB_WILD + XG_W_VALID);
	if (!x)
		return XG_RULE_NONE;
#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++)
		m[i] = x->w[i];

	if (NAMED(PROTO) && field_and(m, bank, XG_FB_PROTO + p->proto, XG_W_PROTO))
		return XG_RULE_NONE;
	if (NAMED(SPORT) || NAMED(DPORT) || NAMED(APORT)) {
		struct xg_portbits *sp = port_bits(bank, p, 0);
		struct xg_portbits *dp = port_bits(bank, p, 1);
		if (!sp || !dp)
			return XG_RULE_NONE;
		if (wild_and(m, &sp->src, bank, XG_W_SPORT) ||
		    wild_and(m, &dp->dst, bank, XG_W_DPORT))
			return XG_RULE_NONE;
		y = fb(bank, XG_FB_WILD + XG_W_APORT);
		if (!y)
			return XG_RULE_NONE;
#pragma unroll
		for (int i = 0; i < XG_RULE_WORDS; i++)
			m[i] &= sp->any.w[i] | dp->any.w[i] | y->w[i];
	}
	if (!bits_any(m))
		return XG_RULE_NONE;

	if (NAMED(APP) || NAMED(CAT) || NAMED(CALL)) {
		__u32 app = f ? f->app : 0, cat = f ? f->category : 0, call = f ? f->call : 0;
		if (app >= XG_APP_MAX)
			app = 0;
		if (cat >= XG_CAT_MAX)
			cat = 0;
		if (call >= XG_CALL_MAX)
			call = 0;
		if (field_and(m, bank, XG_FB_APP + app, XG_W_APP) ||
		    field_and(m, bank, XG_FB_CAT + cat, XG_W_CAT) ||
		    field_and(m, bank, XG_FB_CALL + call, XG_W_CALL))
			return XG_RULE_NONE;
	}
	__u32 tt = p->tun_type < XG_TUN_MAX ? p->tun_type : 0;
	if (NAMED(TUN) && field_and(m, bank, XG_FB_TUN + tt, XG_W_TUN))
		return XG_RULE_NONE;
	if (NAMED(TUNID)) {
		y = fb(bank, XG_FB_WILD + XG_W_TUNID);
		if (!y)
			return XG_RULE_NONE;
		x = 0;
		if (p->tun_type) {
			struct xg_tunid_key tk = {.bank = bank, .tun_id = p->tun_id};
			x = tunid.lookup(&tk);
		}
		if (x) {
			bits_and(m, x, y);
		} else {
#pragma unroll
			for (int i = 0; i < XG_RULE_WORDS; i++)
				m[i] &= y->w[i];
		}
	}
#undef NAMED

	/* Address lookups last, and only where a remaining rule needs one: class 0 ("in no
	 * set") holds exactly the rules that do not look at that role. */
	if (!bits_any(m))
		return XG_RULE_NONE;
	__u32 k0 = bank * XG_ADDRCLASS_MAX;
	struct xg_addrclass *c0 = addrclass.lookup(&k0);
	if (!c0)
		return XG_RULE_NONE;
	__u64 need_s = 0, need_d = 0;
#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++) {
		need_s |= m[i] & (~c0->src.w[i] | ~c0->any.w[i]);
		need_d |= m[i] & (~c0->dst.w[i] | ~c0->any.w[i]);
	}
	struct xg_addrclass *sa = need_s ? addr_bits(sc, bank, p->src) : c0;
	struct xg_addrclass *da = need_d ? addr_bits(sc, bank, p->dst) : c0;
	if (!sa || !da)
		return XG_RULE_NONE;
	struct xg_addrclass *osa = sa, *oda = da;
	if (p->tun_type) {
		osa = addr_bits(sc, bank, p->osrc);
		oda = addr_bits(sc, bank, p->odst);
		if (!osa || !oda)
			return XG_RULE_NONE;
	}
#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++)
		m[i] &= sa->src.w[i] & da->dst.w[i] & (sa->any.w[i] | da->any.w[i]) &
			osa->osrc.w[i] & oda->odst.w[i];

#pragma unroll
	for (int i = 0; i < XG_RULE_WORDS; i++) {
		if (m[i])
			return i * 64 + xg_ctz64(m[i]);
	}
	return XG_RULE_NONE;
}

/* Token bucket: 1 if the packet conforms; tokens are kept scaled by 1e9. A bucket is taken
 * from by several CPUs at once (a rule's by every queue, a flow's by the queues of its two
 * directions): read and written without care, each CPU lost the others' takes and a rule hit
 * from two CPUs let up to 11 times its rate through (tests/datapath/test_policy_match.py).
 * So the refill of an interval is credited once, by the CPU whose compare-and-swap moves
 * last_ns to its time, never past the burst, and a take is an atomic subtraction, given back
 * when the bucket had too little (tokens are signed while takes race). */
_Static_assert(__builtin_offsetof(struct xg_flow, tb_last_ns) ==
		       __builtin_offsetof(struct xg_flow, tb_tokens) + 8 &&
	       __builtin_offsetof(struct xg_bucket, last_ns) == 8,
	       "a flow's tb_tokens and tb_last_ns are read as a struct xg_bucket");

static __always_inline int tb_take(struct xg_bucket *b, struct xg_rule *r, __u64 now, __u64 bytes)
{
	__s64 cost = (r->rl_unit == XG_RL_PPS ? 1 : bytes) * 1000000000ULL;
	__s64 cap = r->rl_burst * 1000000000ULL;
	__u64 last = *(volatile __u64 *)&b->last_ns;
	if (now > last && __sync_val_compare_and_swap(&b->last_ns, last, now) == last) {
		__u64 el = now - last;
		if (el > 1000000000ULL)
			el = 1000000000ULL;
		__s64 t = *(volatile __s64 *)&b->tokens;
		__s64 add = el * r->rl_rate;
		if (last == 0 || add > cap - t) /* a new bucket starts full */
			add = cap - t;
		if (add > 0)
			__sync_fetch_and_add((__s64 *)&b->tokens, add);
	}
	if (__sync_fetch_and_add((__s64 *)&b->tokens, -cost) >= cost)
		return 1;
	__sync_fetch_and_add((__s64 *)&b->tokens, cost);
	return 0;
}

static __always_inline void dim_count(__u32 idx, __u64 bytes)
{
	xg_count(dims.lookup(&idx), bytes);
}

static __always_inline void sample(struct xdp_md *ctx, struct xg_pkt *p, struct xg_flow_key *key,
				   struct xg_flow *f, __u8 dir, __u64 now)
{
	struct xg_sample *s = samples.ringbuf_reserve(sizeof(struct xg_sample));
	if (!s) {
		f->flags |= XG_FF_SAMPLE_LOST;
		xg_event(XG_E_SAMPLE_LOST);
		return;
	}
	__u32 plen = ctx->data_end - ctx->data;
	__u32 len = 0;
	if (p->l3_off < plen)
		len = plen - p->l3_off;
	if (len > XG_SAMPLE_BYTES)
		len = XG_SAMPLE_BYTES;
	s->hdr.ts_ns = bpf_ktime_get_ns(); /* precise: first-packet-to-verdict latency */
	s->hdr.key = *key;
	s->hdr.ifindex = ctx->ingress_ifindex;
	s->hdr.wire_len = p->ip_len;
	s->hdr.dir = dir;
	s->hdr.seq = f->nsampled;
	__builtin_memcpy(s->hdr.outer_src, p->tun_type ? p->osrc : p->src, 16);
	__builtin_memcpy(s->hdr.outer_dst, p->tun_type ? p->odst : p->dst, 16);
	/* The helper's length must be provably in [1, XG_SAMPLE_BYTES]. Debian 12's 6.1
	 * verifier learns no lower bound from `len != 0`, so the range is built from len - 1
	 * (the empty asm keeps the compiler from folding it back into a test of len). */
	__u64 n1 = (__u64)len - 1;
	asm volatile("" : "+r"(n1));
	if (n1 < XG_SAMPLE_BYTES && bpf_xdp_load_bytes(ctx, p->l3_off, s->data, n1 + 1) == 0)
		s->hdr.cap_len = len;
	else
		s->hdr.cap_len = 0;
	samples.ringbuf_submit(s, 0);
	f->nsampled++;
	f->flags |= XG_FF_SAMPLED;
	xg_event(XG_E_SAMPLE_SENT);
}

static __always_inline int act_verdict(__u8 action)
{
	return action == XG_ACT_DROP ? XG_V_DROP : XG_V_PASS;
}

/* What every stage looks up first. */
struct xg_stage {
	struct xg_config *cfg;
	struct xg_policy *pol;
	struct xg_scratch *sc;
	__u32 bank;
};

static __always_inline int xg_enter(struct xg_stage *st)
{
	__u32 zero = 0;
	st->cfg = config.lookup(&zero);
	if (!st->cfg)
		return -1;
	st->bank = st->cfg->gen & 1;
	st->pol = policy.lookup(&st->bank);
	st->sc = scratch.lookup(&zero);
	return st->pol && st->sc ? 0 : -1;
}

/* Stage 2: flow, class, decision. Runs on the parse results left in scratch. */
static __always_inline int xg_decide(struct xdp_md *ctx, struct xg_stage *stp, __u64 bytes);

/* One IP level at `off`: the IP header, the L4 header and, if one is to be opened, the
 * tunnel header. Then the decision, inline; or, for the inner packet of a tunnel that the
 * outermost level cannot read in its common shape, a tail call into xdpgate_level (or an
 * exit for what is not decided by the rules). */
static __always_inline int xg_level(struct xdp_md *ctx, struct xg_stage *st, __u32 lvl,
				    __u32 off, __u64 bytes)
{
	struct xg_scratch *sc = st->sc;
	struct xg_policy *pol = st->pol;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (off > XG_MAX_HDR_OFF || lvl > XG_TUNNEL_DEPTH)
		return xg_exit(act_verdict(pol->unparsed_action), XG_R_MALFORMED, bytes);
	struct xg_cursor c = {.pos = data + off, .end = data_end};
	sc->p.l3_off = off;
	int r = parse_level(&c, &sc->p, sc->et, pol->tunnels, lvl < XG_TUNNEL_DEPTH);
	if (lvl == 0 && r > 0) {
		__builtin_memcpy(sc->p.osrc, sc->p.src, 16);
		__builtin_memcpy(sc->p.odst, sc->p.dst, 16);
	}
	if (r == XG_P_NOTIP) /* e.g. ARP inside VXLAN or GRE bridging: not an error */
		return xg_exit(act_verdict(pol->unparsed_action), XG_R_UNPARSED, bytes);
	if (r == XG_P_TUN_BAD || (r < 0 && lvl > 0))
		return xg_exit(act_verdict(pol->unparsed_action), XG_R_TUNNEL_MALFORMED, bytes);
	if (r < 0)
		return xg_exit(act_verdict(pol->unparsed_action), XG_R_MALFORMED, bytes);
	if (r > 0) {
		/* a tunnel to open: the inner packet starts at the cursor. Under the outermost
		 * tunnel, the common inner packet is read here; anything else goes to the level
		 * parser (a tail call) */
		sc->off = c.pos - data;
		sc->et = r;
		sc->lvl = lvl + 1;
		sc->p.l3_off = sc->off;
		if (lvl > 0 || parse_inner_common(&c, &sc->p, r, 1 < XG_TUNNEL_DEPTH)) {
			progs.call(ctx, XG_PROG_LEVEL);
			return xg_exit(XG_V_PASS, XG_R_INTERNAL, bytes);
		}
	}
	if (sc->p.frag_later)
		return xg_exit(act_verdict(pol->frag_action), XG_R_FRAGMENT, bytes);
	return xg_decide(ctx, st, bytes);
}

/* Stage 1: Ethernet and VLAN tags, then the outermost IP level. */
int xdpgate_main(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct xg_stage st;
	if (xg_enter(&st))
		return XDP_PASS;
	struct xg_scratch *sc = st.sc;
	/* the parsers write every field of sc->p they set on every path, except the tunnel
	 * fields (and osrc/odst, which are read only when tun_type is set) */
	sc->p.tun_type = 0;
	sc->p.tun_id = 0;

	struct xg_cursor c = {.pos = data, .end = data_end};
	int et = parse_eth(&c);
	if (et < 0)
		return xg_exit(act_verdict(st.pol->unparsed_action), XG_R_MALFORMED, bytes);
	if (et != ETH_P_IP && et != ETH_P_IPV6)
		return xg_exit(act_verdict(st.pol->unparsed_action), XG_R_UNPARSED, bytes);
	sc->p.l2_off = c.pos - data;
	sc->et = et;
	sc->lvl = 0;
	return xg_level(ctx, &st, 0, sc->p.l2_off, bytes);
}

/* Stage 1b: the packet inside a tunnel (one level per run). */
int xdpgate_level(struct xdp_md *ctx)
{
	__u64 bytes = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	struct xg_stage st;
	if (xg_enter(&st))
		return XDP_PASS;
	return xg_level(ctx, &st, st.sc->lvl, st.sc->off, bytes);
}

/* The entry of `key` among the ways of set `si` (tag first, then the whole key), its
 * way's seen time brought to `nows`; NULL when the set has not got it. */
static __always_inline struct xg_flow *way_find(struct xg_flowset *fs, __u32 si, __u32 tag,
						struct xg_flow_key *key, __u32 nows)
{
#pragma unroll
	for (__u32 w = 0; w < XG_FLOW_WAYS; w++) {
		__u64 word = fs->way[w];
		if ((__u32)word != tag)
			continue;
		__u32 idx = si * XG_FLOW_WAYS + w;
		struct xg_flow_slot *s = flows.lookup(&idx);
		if (s && xg_key_eq(xg_slot_key(s), key)) {
			if ((__u32)(word >> 32) != nows) /* the seen half only: a writer's CAS sees it */
				((__u32 *)&fs->way[w])[1] = nows;
			return &s->val;
		}
	}
	return NULL;
}

static __always_inline int xg_decide(struct xdp_md *ctx, struct xg_stage *stp, __u64 bytes)
{
	struct xg_config *cfg = stp->cfg;
	struct xg_policy *pol = stp->pol;
	struct xg_scratch *sc = stp->sc;
	__u32 bank = stp->bank;
#define p (sc->p)
#define key (sc->key)

	/* 2. the flow */
	int a_is_src = 1;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (p.src[i] != p.dst[i]) {
			a_is_src = p.src[i] < p.dst[i];
			break;
		}
		if (i == 3)
			a_is_src = bpf_ntohs(p.sport) <= bpf_ntohs(p.dport);
	}
	if (a_is_src) {
		__builtin_memcpy(key.addr_a, p.src, 16);
		__builtin_memcpy(key.addr_b, p.dst, 16);
		key.port_a = p.sport;
		key.port_b = p.dport;
	} else {
		__builtin_memcpy(key.addr_a, p.dst, 16);
		__builtin_memcpy(key.addr_b, p.src, 16);
		key.port_a = p.dport;
		key.port_b = p.sport;
	}
	key.proto = p.proto;
	key.tun_type = p.tun_type;
	key.pad = 0;
	key.tun_id = p.tun_id;

	/* The coarse clock is enough for flow ages, expectations and the heartbeat. It moves
	 * once a tick, as jiffies do, so it is read once per tick and CPU: the verifier inlines
	 * bpf_jiffies64() as a load, while the clock helper is a call (with SRSO or retpoline
	 * mitigations every return of its call chain is costly: ~15 ns a packet measured here).
	 * A CPU that reads the new jiffy just before the tick updates the clock keeps the old
	 * time for that tick: one tick later at most than the coarse clock itself. */
	__u64 jif = bpf_jiffies64();
	if (sc->clk_j != jif || !sc->clk_ns) {
		sc->clk_j = jif;
		sc->clk_ns = bpf_ktime_get_coarse_ns();
	}
	__u64 now = sc->clk_ns;

	/* the flow's two sets, and its entry among their ways (bpf/flowhash.h, struct
	 * xg_flowset): the second set is read only when the first has not got the flow */
	__u64 h = xg_flow_hash(&key, cfg->flow_seed);
	__u32 si = xg_flow_set(h), si2 = xg_flow_set2(h), tag = xg_flow_tag(h);
	__u32 nows = (__u32)(now >> XG_SEEN_SHIFT);
	struct xg_flowset *fs = flowsets.lookup(&si);
	if (!fs)
		return xg_exit(XG_V_PASS, XG_R_MALFORMED, bytes);
	struct xg_flow *f = way_find(fs, si, tag, &key, nows);
	if (!f) {
		fs = flowsets.lookup(&si2);
		if (!fs)
			return xg_exit(XG_V_PASS, XG_R_MALFORMED, bytes);
		f = way_find(fs, si2, tag, &key, nows);
		/* where a new flow may go, parked as the decision is below (volatile: these
		 * values are then dead across the decision, which keeps the stack within its
		 * 512 bytes) */
		*(volatile __u32 *)&sc->f_set[0] = si;
		*(volatile __u32 *)&sc->f_set[1] = si2;
		*(volatile __u32 *)&sc->f_tag = tag;
	}
	struct xg_flow *nfp = &sc->nf; /* a new flow's entry while it is being decided */
	int fresh = !f;
	if (!f) {
		__builtin_memset(nfp, 0, sizeof(*nfp));
#define nf (*nfp)
		nf.first_ns = now;
		nf.init_is_a = a_is_src;
		nf.override = XG_ACT_NONE;
		nf.action[0] = XG_ACT_NONE;
		nf.action[1] = XG_ACT_NONE;
		if (p.tun_type) {
			__builtin_memcpy(nf.outer_a, a_is_src ? p.osrc : p.odst, 16);
			__builtin_memcpy(nf.outer_b, a_is_src ? p.odst : p.osrc, 16);
		} else {
			__builtin_memcpy(nf.outer_a, key.addr_a, 16);
			__builtin_memcpy(nf.outer_b, key.addr_b, 16);
		}
		/* an endpoint announced by SDP labels the flow from its first packet */
		__u32 zero = 0;
		__u64 *live = expect_live.lookup(&zero);
		if (p.has_ports && live && *live > now) {
			__builtin_memset(&sc->ek, 0, sizeof(sc->ek));
#define ek (sc->ek)
			ek.proto = p.proto;
			ek.tun_type = p.tun_type;
			ek.tun_id = p.tun_id;
			__builtin_memcpy(ek.addr, p.dst, 16);
			ek.port = p.dport;
			struct xg_expect *e = expect.lookup(&ek);
			if (!e) {
				__builtin_memcpy(ek.addr, p.src, 16);
				ek.port = p.sport;
				e = expect.lookup(&ek);
			}
#undef ek
			if (e && e->expires_ns > now) {
				nf.app = e->cls.app;
				nf.category = e->cls.category;
				nf.call = e->cls.call;
				nf.override = e->cls.override;
				nf.flags |= XG_FF_CLASSIFIED | XG_FF_EXPECTED;
				xg_event(XG_E_EXPECT_HIT);
			}
		}
#undef nf
		f = nfp; /* the flow takes its entry once decided (below) */
	}
	__u8 dir = (a_is_src == f->init_is_a) ? 0 : 1;
	if (p.tun_type) {
		/* the same inner flow from other tunnel endpoints: outer_* rules must look again */
		__u32 *oa = (__u32 *)(a_is_src ? p.osrc : p.odst);
		__u32 *ob = (__u32 *)(a_is_src ? p.odst : p.osrc);
		__u32 *fa = (__u32 *)f->outer_a, *fbb = (__u32 *)f->outer_b;
		__u32 moved = 0;
#pragma unroll
		for (int i = 0; i < 4; i++)
			moved |= (oa[i] ^ fa[i]) | (ob[i] ^ fbb[i]);
		if (moved) {
			__builtin_memcpy(f->outer_a, oa, 16);
			__builtin_memcpy(f->outer_b, ob, 16);
			f->action[0] = XG_ACT_NONE;
			f->action[1] = XG_ACT_NONE;
		}
	}
	if (now > f->last_ns) /* per-CPU clock reads may lag a tick: never move it back */
		f->last_ns = now;
	f->pkts[dir & 1]++;
	f->bytes[dir & 1] += bytes;
	if (p.proto == IPPROTO_TCP)
		f->tcp_flags[dir & 1] |= p.tcp_flags;

	/* a label can only wait in the mailbox for a flow the controller was sent a sample of
	 * (not for a new flow, nor one without sampling, nor one whose samples were all lost) */
	if ((f->flags & (XG_FF_CLASSIFIED | XG_FF_SAMPLED)) == XG_FF_SAMPLED && !fresh) {
		struct xg_class *cl = mailbox.lookup(&key);
		if (cl) {
			f->app = cl->app;
			f->category = cl->category;
			f->call = cl->call;
			f->override = cl->override;
			f->flags |= XG_FF_CLASSIFIED;
			if (cl->flags & XG_CF_KEEP_SAMPLING)
				f->flags |= XG_FF_KEEP_SAMPLING;
			f->action[0] = XG_ACT_NONE; /* the class may change the verdict */
			f->action[1] = XG_ACT_NONE;
			mailbox.delete(&key);
			xg_event(XG_E_CLASS_APPLIED);
		}
	}
	/* 3. decide */
	__u8 action;
	__u32 reason;
	__u32 slot;
	if (pol->flow_first && f->override != XG_ACT_NONE) {
		action = f->override;
		reason = XG_R_FLOW;
		slot = XG_RULE_NONE;
	} else {
		if (f->pol_gen != cfg->gen) {
			/* cached verdicts belong to an older policy (or none yet) */
			f->rule[0] = XG_RULE_NONE;
			f->rule[1] = XG_RULE_NONE;
			f->action[0] = XG_ACT_NONE;
			f->action[1] = XG_ACT_NONE;
			f->pol_gen = cfg->gen;
		}
		if (f->action[dir & 1] == XG_ACT_NONE) {
			__u32 s = xg_eval(sc, pol, bank, f);
			if (s >= XG_RULE_MAX)
				s = XG_RULE_NONE;
			__u8 a = pol->default_action;
			if (s != XG_RULE_NONE) {
				__u32 rk = bank * XG_RULE_MAX + s;
				struct xg_rule *rl = rules.lookup(&rk);
				a = rl ? rl->action : XG_ACT_ALLOW;
			}
			f->rule[dir & 1] = s;
			f->action[dir & 1] = a;
		}
		slot = f->rule[dir & 1];
		action = f->action[dir & 1];
		reason = slot == XG_RULE_NONE ? XG_R_DEFAULT : XG_R_RULE;
	}

	/* per-rule hits */
	__u32 hk = bank * (XG_RULE_MAX + 1) + (slot < XG_RULE_MAX ? slot : XG_RULE_MAX);
	xg_count(rule_hits.lookup(&hk), bytes);
	if (p.tun_type)
		dim_count(XG_D_TUN + (p.tun_type < XG_TUN_MAX ? p.tun_type : 0), bytes);

	/* The decision waits in scratch while a new flow takes its way and is sampled, and is
	 * read back from there (volatile: a real store and load): its values are then dead
	 * across that code, so the verifier does not walk it once per decision (Debian 12's
	 * 6.1 did: 691k instructions for this stage, 90k with the decision parked). */
	*(volatile __u32 *)&sc->d_slot = slot;
	*(volatile __u32 *)&sc->d_reason = reason;
	*(volatile __u32 *)&sc->d_action = action;
	if (fresh) {
		/* A drop no label could change (no rule up to the one that matched names a
		 * class) leaves no entry when the policy asks for it: a flood from spoofed
		 * sources cannot push live flows out of the table. */
		if (pol->stateless && action == XG_ACT_DROP && reason != XG_R_FLOW &&
		    (slot == XG_RULE_NONE ? pol->class_rule_min == XG_RULE_NONE
					   : slot < pol->class_rule_min)) {
			xg_event(XG_E_DROP_UNTRACKED);
			return xg_exit(XG_V_DROP, reason, bytes);
		}
		/* The way to take: an empty one, else the one unseen for longest, of both sets (the
		 * first's on a tie); never one that another CPU is writing. It is claimed by a
		 * compare-and-swap of its word, so two CPUs never write one entry; the word is
		 * published after the entry. A reader that found the old flow there just before
		 * may still count its packet into the new entry (as with the kernel's hash maps,
		 * whose entries are reused in place). Two CPUs taking the first packets of one
		 * flow at the same instant may each add an entry for it: lookups find the first,
		 * and the other ages out. */
		si = *(volatile __u32 *)&sc->f_set[0];
		si2 = *(volatile __u32 *)&sc->f_set[1];
		tag = *(volatile __u32 *)&sc->f_tag;
		nows = (__u32)(now >> XG_SEEN_SHIFT);
		fs = flowsets.lookup(&si);
		struct xg_flowset *fs2 = flowsets.lookup(&si2);
		__u32 victim = 0, best = 0;
		__u64 vword = 0;
		if (!fs || !fs2)
			return xg_exit(XG_V_PASS, XG_R_MALFORMED, bytes);
#pragma unroll
		for (__u32 w = 0; w < 2 * XG_FLOW_WAYS; w++) {
			__u64 word = (w < XG_FLOW_WAYS ? fs : fs2)->way[w & (XG_FLOW_WAYS - 1)];
			__u32 t = (__u32)word, score;
			if (t == 0)
				score = 0xffffffff;
			else if (t == XG_WAY_BUSY)
				score = 0;
			else
				score = (nows - (__u32)(word >> 32)) | 1; /* 1.. unseen time */
			if (score > best) {
				best = score;
				victim = w;
				vword = word;
			}
		}
		if (victim >= XG_FLOW_WAYS) {
			fs = fs2;
			si = si2;
		}
		victim &= XG_FLOW_WAYS - 1;
		struct xg_flow_slot *s = NULL;
		if (best) {
			__u32 idx = si * XG_FLOW_WAYS + victim;
			s = flows.lookup(&idx);
		}
		__u64 *vw = &fs->way[victim];
		if (s && __sync_val_compare_and_swap(vw, vword, XG_WAY_BUSY) == vword) {
			__builtin_memcpy(xg_slot_key(s), &key, sizeof(key));
			s->pad = 0;
			__builtin_memcpy(&s->val, nfp, sizeof(*nfp));
			__sync_lock_test_and_set(vw, ((__u64)nows << 32) | tag);
			f = &s->val;
			if (vword & 1)
				xg_event(XG_E_FLOW_EVICTED);
			xg_event(XG_E_FLOW_NEW);
		} else {
			/* no way free of writers: decide this packet from the working copy */
			f = nfp;
			xg_event(XG_E_FLOW_NOSLOT);
		}
	}

	if ((!(f->flags & XG_FF_CLASSIFIED) || (f->flags & XG_FF_KEEP_SAMPLING)) &&
	    f->nsampled < cfg->sample_pkts) {
		/* A TCP segment without payload (handshake, bare ACK) has nothing to classify: it
		 * uses its place in the budget (samples carry their packet number) but is not
		 * sent, except as the budget's last packet, which tells the classifier the flow
		 * is done. The offline classifier skips the same packets (offline.py). */
		if (p.proto == IPPROTO_TCP && p.ip_len <= p.l3_hlen + p.l4_hlen &&
		    f->nsampled + 1 < cfg->sample_pkts) {
			f->nsampled++;
			xg_event(XG_E_SAMPLE_BARE);
		} else {
			sample(ctx, &p, &key, f, dir, now);
		}
	}
	if (f->flags & XG_FF_CLASSIFIED) {
		dim_count(XG_D_APP + (f->app < XG_APP_MAX ? f->app : 0), bytes);
		dim_count(XG_D_CAT + (f->category < XG_CAT_MAX ? f->category : 0), bytes);
		if (f->call && f->call < XG_CALL_MAX)
			dim_count(XG_D_CALL + f->call, bytes);
	}
	slot = *(volatile __u32 *)&sc->d_slot;
	reason = *(volatile __u32 *)&sc->d_reason;
	action = *(volatile __u32 *)&sc->d_action;

	/* controller away: flows that still wait for their label follow the fail mode */
	if (cfg->fail_closed && !(f->flags & XG_FF_CLASSIFIED) && now > cfg->heartbeat_ns &&
	    now - cfg->heartbeat_ns > cfg->away_ns) {
		struct xg_bits *cls = fb(bank, XG_FB_WILD + XG_W_CLASS);
		if (cls) {
			__u64 any = 0;
#pragma unroll
			for (int i = 0; i < XG_RULE_WORDS; i++)
				any |= cls->w[i];
			if (any)
				return xg_exit(XG_V_DROP, XG_R_FAIL_MODE, bytes);
		}
	}

	if (action == XG_ACT_DROP)
		return xg_exit(XG_V_DROP, reason, bytes);
	if (action == XG_ACT_RATE_LIMIT && slot < XG_RULE_MAX) {
		__u32 rk = bank * XG_RULE_MAX + slot;
		struct xg_rule *rl = rules.lookup(&rk);
		if (rl && rl->rl_unit) {
			int ok;
			if (rl->rl_per == XG_RL_PER_FLOW) {
				/* the flow's tb_tokens and tb_last_ns, as a bucket (xdpgate_types.h) */
				ok = tb_take((struct xg_bucket *)&f->tb_tokens, rl, bpf_ktime_get_ns(),
					     bytes);
			} else {
				struct xg_bucket *b = buckets.lookup(&rk);
				ok = b ? tb_take(b, rl, bpf_ktime_get_ns(), bytes) : 1;
			}
			if (!ok)
				return xg_exit(XG_V_DROP, XG_R_RATE_LIMIT, bytes);
		}
		return xg_exit(XG_V_PASS, reason, bytes);
	}
	if (action == XG_ACT_REJECT) {
		if (p.tun_type || p.fragmented)
			return xg_exit(XG_V_DROP, XG_R_REJECT_FALLBACK, bytes);
		if (xg_reject(ctx, &p) == 0) {
			xg_event(XG_E_REJECT_SENT);
			return xg_exit(XG_V_TX, reason, bytes);
		}
		return xg_exit(XG_V_DROP, XG_R_REJECT_FALLBACK, bytes);
	}
	return xg_exit(XG_V_PASS, reason, bytes);
#undef p
#undef key
}

/* Stage 2 as a program of its own (kept for tools that tail-call it directly). */
int xdpgate_decide(struct xdp_md *ctx)
{
	__u64 bytes = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	struct xg_stage st;
	if (xg_enter(&st))
		return XDP_PASS;
	return xg_decide(ctx, &st, bytes);
}
