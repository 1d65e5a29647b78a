/* SPDX-License-Identifier: GPL-2.0 */
/* parse.h - forward-only header parsers.
 *
 * Contract: every parse_<hdr>(c, ...) checks its own bounds against c->end before
 * reading, advances c->pos past the header it parsed, and returns >= 0 on success
 * (the next protocol, host order, where there is one) or a negative XG_P_* code.
 * Packet fields stay in network order unless a name ends in _h (host order).
 * Nothing here writes to the packet.
 */
#ifndef XDPGATE_PARSE_H
#define XDPGATE_PARSE_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "xdpgate_types.h"

#define XG_P_BAD -1     /* truncated or inconsistent header */
#define XG_P_NOTIP -2   /* not an IP packet */
#define XG_P_TUN_BAD -3 /* a tunnel header we opened is malformed */

#define XG_ETH_P_8021Q 0x8100
#define XG_ETH_P_8021AD 0x88a8
#define XG_ETH_P_TEB 0x6558
#define XG_PROTO_IPIP 4
#define XG_PROTO_IPV6 41
#define XG_PROTO_GRE 47
#define XG_PROTO_ICMPV6 58
#define XG_GTPU_PORT 2152
#define XG_VXLAN_PORT 4789

struct xg_cursor {
	void *pos;
	void *end;
};

/* What the parsers learn about a packet; addresses are ::ffff:a.b.c.d for IPv4. */
struct xg_pkt {
	__u32 src[4];
	__u32 dst[4];
	__u32 osrc[4]; /* outermost IP header's addresses; set only when tun_type != 0 */
	__u32 odst[4];
	__u16 sport; /* network order, 0 if none */
	__u16 dport;
	__u8 proto;
	__u8 has_ports;
	__u8 frag_later; /* non-first fragment: no L4 header */
	__u8 fragmented; /* any fragment, first included */
	__u8 tcp_flags;
	__u8 tun_type;
	__u8 is_v6;
	__u8 l4_hlen;  /* TCP header length (with options), 0 for other transports */
	__u32 tun_id;
	__u32 l3_off;  /* offset of the innermost IP header from the frame start */
	__u32 ip_len;  /* innermost IP packet length per its header */
	__u32 l2_off;  /* offset of the outermost IP header (after Ethernet and VLAN tags) */
	__u32 l3_hlen; /* innermost IP header length, IPv4 options or IPv6 extensions included */
} __attribute__((aligned(8)));

struct xg_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Ethernet plus up to two VLAN tags (802.1Q, 802.1ad). Returns the ethertype. */
static __always_inline int parse_eth(struct xg_cursor *c)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > c->end)
		return XG_P_BAD;
	c->pos = eth + 1;
	__u16 proto = bpf_ntohs(eth->h_proto);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != XG_ETH_P_8021Q && proto != XG_ETH_P_8021AD)
			break;
		struct xg_vlan_hdr *v = c->pos;
		if ((void *)(v + 1) > c->end)
			return XG_P_BAD;
		c->pos = v + 1;
		proto = bpf_ntohs(v->proto);
	}
	return proto;
}

/* The addresses of an IPv4 header, as IPv4-mapped IPv6 (::ffff:a.b.c.d), and its length. */
static __always_inline void pkt_addrs4(struct xg_pkt *p, struct iphdr *ip, __u32 tot)
{
	/* 8-byte stores: the flow key is copied from here with 8-byte loads, and a load
	 * spanning two narrower stores cannot be forwarded from the store buffer */
	__u64 *s = (__u64 *)p->src, *d = (__u64 *)p->dst;
	s[0] = 0;
	s[1] = (__u64)bpf_htonl(0xffff) | ((__u64)ip->saddr << 32);
	d[0] = 0;
	d[1] = (__u64)bpf_htonl(0xffff) | ((__u64)ip->daddr << 32);
	p->is_v6 = 0;
	p->ip_len = tot;
}

/* The addresses of an IPv6 header and the packet's length. */
static __always_inline void pkt_addrs6(struct xg_pkt *p, struct ipv6hdr *ip6)
{
	__builtin_memcpy(p->src, &ip6->saddr, 16);
	__builtin_memcpy(p->dst, &ip6->daddr, 16);
	p->is_v6 = 1;
	p->ip_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
}

/* IPv4 with options. Returns the L4 protocol. */
static __always_inline int parse_ipv4(struct xg_cursor *c, struct xg_pkt *p)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return XG_P_BAD;
	if (ip->version != 4 || ip->ihl < 5)
		return XG_P_BAD;
	__u32 hl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < hl)
		return XG_P_BAD;
	if (c->pos + hl > c->end)
		return XG_P_BAD;
	pkt_addrs4(p, ip, tot);
	__u16 frag = bpf_ntohs(ip->frag_off);
	p->frag_later = (frag & 0x1fff) != 0;
	p->fragmented = p->frag_later || (frag & 0x2000);
	c->pos += hl;
	return ip->protocol;
}

struct xg_ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct xg_ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 offlg;
	__be32 id;
};

/* IPv6 and its usual extension headers (bounded). Returns the L4 protocol. */
static __always_inline int parse_ipv6(struct xg_cursor *c, struct xg_pkt *p)
{
	struct ipv6hdr *ip6 = c->pos;
	if ((void *)(ip6 + 1) > c->end)
		return XG_P_BAD;
	if (ip6->version != 6)
		return XG_P_BAD;
	pkt_addrs6(p, ip6);
	p->frag_later = 0;
	p->fragmented = 0;
	c->pos = ip6 + 1;
	__u8 nh = ip6->nexthdr;
#pragma unroll
	for (int i = 0; i < XG_IPV6_EXT_MAX; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS) {
			struct xg_ipv6_opt *o = c->pos;
			if ((void *)(o + 1) > c->end)
				return XG_P_BAD;
			__u32 l = (o->hdrlen + 1) * 8;
			if (c->pos + l > c->end)
				return XG_P_BAD;
			nh = o->nexthdr;
			c->pos += l;
		} else if (nh == IPPROTO_AH) {
			struct xg_ipv6_opt *o = c->pos;
			if ((void *)(o + 1) > c->end)
				return XG_P_BAD;
			__u32 l = (o->hdrlen + 2) * 4;
			if (c->pos + l > c->end)
				return XG_P_BAD;
			nh = o->nexthdr;
			c->pos += l;
		} else if (nh == IPPROTO_FRAGMENT) {
			struct xg_ipv6_frag *f = c->pos;
			if ((void *)(f + 1) > c->end)
				return XG_P_BAD;
			__u16 off = bpf_ntohs(f->offlg);
			p->fragmented = 1;
			p->frag_later = (off & 0xfff8) != 0;
			nh = f->nexthdr;
			c->pos = f + 1;
			if (p->frag_later)
				return nh;
		} else {
			return nh;
		}
	}
	/* still an extension header after the bound: not an L4 protocol we can trust */
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	    nh == IPPROTO_AH || nh == IPPROTO_FRAGMENT)
		return XG_P_BAD;
	return nh;
}

/* TCP, UDP, ICMP, ICMPv6: ports and flags; advances past the fixed header. */
static __always_inline int parse_l4(struct xg_cursor *c, struct xg_pkt *p)
{
	p->sport = 0;
	p->dport = 0;
	p->has_ports = 0;
	p->l4_hlen = 0;
	p->tcp_flags = 0;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = c->pos;
		if ((void *)(t + 1) > c->end)
			return XG_P_BAD;
		if (t->doff < 5)
			return XG_P_BAD;
		p->sport = t->source;
		p->dport = t->dest;
		p->has_ports = 1;
		p->tcp_flags = ((__u8 *)t)[13];
		p->l4_hlen = t->doff * 4;
		c->pos = t + 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = c->pos;
		if ((void *)(u + 1) > c->end)
			return XG_P_BAD;
		if (bpf_ntohs(u->len) < sizeof(*u))
			return XG_P_BAD;
		p->sport = u->source;
		p->dport = u->dest;
		p->has_ports = 1;
		c->pos = u + 1;
	} else if (p->proto == IPPROTO_ICMP || p->proto == XG_PROTO_ICMPV6) {
		if (c->pos + 4 > c->end)
			return XG_P_BAD;
	}
	return 0;
}

struct xg_gre_hdr {
	__be16 flags;
	__be16 proto;
};

/* GRE (RFC 2784/2890). Returns the payload ethertype, 0 for "not a tunnel we open". */
static __always_inline int parse_gre(struct xg_cursor *c, struct xg_pkt *p)
{
	struct xg_gre_hdr *g = c->pos;
	if ((void *)(g + 1) > c->end)
		return XG_P_TUN_BAD;
	__u16 fl = bpf_ntohs(g->flags);
	if (fl & 0x0007) /* version 1 is PPTP's enhanced GRE: a plain flow */
		return 0;
	if (fl & 0x4000) /* source routing (RFC 1701): not opened */
		return 0;
	c->pos = g + 1;
	__u32 id = 0;
	if (fl & 0x8000) { /* checksum + reserved1 */
		if (c->pos + 4 > c->end)
			return XG_P_TUN_BAD;
		c->pos += 4;
	}
	if (fl & 0x2000) { /* key */
		__be32 *k = c->pos;
		if ((void *)(k + 1) > c->end)
			return XG_P_TUN_BAD;
		id = bpf_ntohl(*k);
		c->pos = k + 1;
	}
	if (fl & 0x1000) { /* sequence number */
		if (c->pos + 4 > c->end)
			return XG_P_TUN_BAD;
		c->pos += 4;
	}
	__u16 proto = bpf_ntohs(g->proto);
	if (proto != ETH_P_IP && proto != ETH_P_IPV6 && proto != XG_ETH_P_TEB)
		return 0;
	p->tun_type = XG_TUN_GRE;
	p->tun_id = id;
	return proto;
}

struct xg_gtpu_hdr {
	__u8 flags;
	__u8 type;
	__be16 len;
	__be32 teid;
};

/* GTP-U G-PDU with its optional fields and extension header chain (bounded).
 * Returns ETH_P_IP/ETH_P_IPV6 of the inner packet, 0 for "not a G-PDU". */
static __always_inline int parse_gtpu(struct xg_cursor *c, struct xg_pkt *p)
{
	struct xg_gtpu_hdr *g = c->pos;
	if ((void *)(g + 1) > c->end)
		return XG_P_TUN_BAD;
	if ((g->flags >> 5) != 1 || !(g->flags & 0x10)) /* version 1, PT = GTP */
		return XG_P_TUN_BAD;
	if (g->type != 0xff) /* echo, error indication, end marker: not user data */
		return 0;
	c->pos = g + 1;
	if (g->flags & 0x07) { /* E, S or PN: sequence, N-PDU, next extension type */
		__u8 *opt = c->pos;
		if ((void *)(opt + 4) > c->end)
			return XG_P_TUN_BAD;
		__u8 next = opt[3];
		c->pos = opt + 4;
		if (!(g->flags & 0x04))
			next = 0;
#pragma unroll
		for (int i = 0; i < XG_GTP_EXT_MAX; i++) {
			if (!next)
				break;
			__u8 *e = c->pos;
			if ((void *)(e + 1) > c->end)
				return XG_P_TUN_BAD;
			__u32 l = e[0] * 4;
			if (l == 0)
				return XG_P_TUN_BAD;
			if (c->pos + l > c->end)
				return XG_P_TUN_BAD;
			__u8 *last = c->pos + l - 1;
			if ((void *)(last + 1) > c->end)
				return XG_P_TUN_BAD;
			next = *last;
			c->pos += l;
		}
		if (next)
			return XG_P_TUN_BAD;
	}
	__u8 *v = c->pos;
	if ((void *)(v + 1) > c->end)
		return XG_P_TUN_BAD;
	p->tun_type = XG_TUN_GTPU;
	p->tun_id = bpf_ntohl(g->teid);
	if ((*v >> 4) == 4)
		return ETH_P_IP;
	if ((*v >> 4) == 6)
		return ETH_P_IPV6;
	return XG_P_TUN_BAD;
}

struct xg_vxlan_hdr {
	__u8 flags;
	__u8 reserved[3];
	__u8 vni[3];
	__u8 reserved2;
};

/* VXLAN: returns the inner ethertype (after the inner Ethernet header and tags). */
static __always_inline int parse_vxlan(struct xg_cursor *c, struct xg_pkt *p)
{
	struct xg_vxlan_hdr *v = c->pos;
	if ((void *)(v + 1) > c->end)
		return XG_P_TUN_BAD;
	if (!(v->flags & 0x08)) /* I flag: VNI valid */
		return XG_P_TUN_BAD;
	c->pos = v + 1;
	p->tun_type = XG_TUN_VXLAN;
	p->tun_id = ((__u32)v->vni[0] << 16) | ((__u32)v->vni[1] << 8) | v->vni[2];
	int proto = parse_eth(c);
	if (proto < 0)
		return XG_P_TUN_BAD;
	return proto;
}

/* The packet inside a tunnel, in its common shape: IPv4 without options or IPv6 without
 * extension headers, not a fragment, TCP or UDP, and not itself a tunnel that may be opened.
 * Returns 0 when it read the packet that way (as parse_level would have), 1 when the general
 * parser must read it: nothing is decided on a 1, and what it left in p is overwritten. */
static __always_inline int parse_inner_common(struct xg_cursor *c, struct xg_pkt *p,
					      int ethertype, int may_open)
{
	int proto;
	if (ethertype == ETH_P_IP) {
		struct iphdr *ip = c->pos;
		if ((void *)(ip + 1) > c->end)
			return 1;
		if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
			return 1;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < sizeof(*ip))
			return 1;
		pkt_addrs4(p, ip, tot);
		p->l3_hlen = sizeof(*ip);
		proto = ip->protocol;
		c->pos = ip + 1;
	} else if (ethertype == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = c->pos;
		if ((void *)(ip6 + 1) > c->end)
			return 1;
		if (ip6->version != 6)
			return 1;
		pkt_addrs6(p, ip6);
		p->l3_hlen = sizeof(*ip6);
		proto = ip6->nexthdr;
		c->pos = ip6 + 1;
	} else {
		return 1;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 1;
	p->proto = proto;
	p->frag_later = 0;
	p->fragmented = 0;
	if (parse_l4(c, p) < 0)
		return 1;
	if (may_open && proto == IPPROTO_UDP &&
	    (p->dport == bpf_htons(XG_GTPU_PORT) || p->dport == bpf_htons(XG_VXLAN_PORT)))
		return 1;
	return 0;
}

/* One IP level: the IP header and, unless it is a later fragment, the L4 header.
 * Returns the inner ethertype if this level carries a tunnel that should be
 * opened, 0 if the packet ends here, or a negative code. */
static __always_inline int parse_level(struct xg_cursor *c, struct xg_pkt *p, int ethertype,
				       __u8 tunnels, int may_open)
{
	int proto;
	void *l3 = c->pos;
	if (ethertype == ETH_P_IP)
		proto = parse_ipv4(c, p);
	else if (ethertype == ETH_P_IPV6)
		proto = parse_ipv6(c, p);
	else
		return XG_P_NOTIP;
	if (proto < 0)
		return proto;
	p->l3_hlen = c->pos - l3;
	p->proto = proto;
	p->has_ports = 0;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->l4_hlen = 0;
	if (p->frag_later)
		return 0;
	int open = may_open && !p->fragmented;
	if (open && (proto == XG_PROTO_IPIP || proto == XG_PROTO_IPV6) &&
	    (tunnels & (1 << XG_TUN_IPIP))) {
		p->tun_type = XG_TUN_IPIP;
		p->tun_id = 0;
		return proto == XG_PROTO_IPIP ? ETH_P_IP : ETH_P_IPV6;
	}
	if (open && proto == XG_PROTO_GRE && (tunnels & (1 << XG_TUN_GRE))) {
		void *save = c->pos;
		int inner = parse_gre(c, p);
		if (inner < 0)
			return inner;
		if (inner == XG_ETH_P_TEB) {
			inner = parse_eth(c);
			if (inner < 0)
				return XG_P_TUN_BAD;
		}
		if (inner > 0)
			return inner;
		c->pos = save;
	}
	int r = parse_l4(c, p);
	if (r < 0)
		return r;
	if (!open || p->proto != IPPROTO_UDP)
		return 0;
	if (p->dport == bpf_htons(XG_GTPU_PORT) && (tunnels & (1 << XG_TUN_GTPU)))
		return parse_gtpu(c, p);
	if (p->dport == bpf_htons(XG_VXLAN_PORT) && (tunnels & (1 << XG_TUN_VXLAN)))
		return parse_vxlan(c, p);
	return 0;
}

#endif
