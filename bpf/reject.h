/* SPDX-License-Identifier: GPL-2.0 */
/* reject.h - turn a packet into its rejection (TCP RST or ICMP unreachable) in place.
 *
 * Called from the decision stage for `action: reject` on a packet that is neither
 * tunnelled nor fragmented; p->l2_off is the IP header's offset (after Ethernet and
 * up to two VLAN tags, which stay as they are; the MACs are swapped). The frame is
 * rewritten in place and the caller returns XDP_TX:
 *   TCP        -> RST|ACK to the sender: ack = seq + payload (+1 for SYN, +1 for FIN),
 *                 seq = the incoming ack if ACK is set, else 0; no options, no payload.
 *                 A RST is never answered.
 *   other IPv4 -> ICMP destination unreachable, code 13 "communication administratively
 *                 prohibited" (RFC 1812), for UDP too: the packet was refused by policy,
 *                 not for want of a listener. It quotes the IP header (with options) + 8.
 *   other IPv6 -> ICMPv6 destination unreachable, code 1 "administratively prohibited",
 *                 quoting the first 48 bytes of the packet (IPv6 header + 8).
 * No reply (return -1, the caller drops and counts REJECT_FALLBACK) for: IPv6 TCP
 * behind extension headers, ICMP/ICMPv6 error messages, multicast/broadcast
 * destinations, and headers that do not add up.
 *
 * All packet access goes through bpf_xdp_load_bytes/bpf_xdp_store_bytes with
 * stack buffers of constant size, so nothing depends on the verifier tracking
 * packet pointers across bpf_xdp_adjust_head/tail. No maps here (bcc rewrites map
 * calls only in xdpgate.c).
 */
#ifndef XDPGATE_REJECT_H
#define XDPGATE_REJECT_H

#include <uapi/linux/icmp.h>
#include <uapi/linux/icmpv6.h>

#include "parse.h"

#define XG_REJ_L2_MAX 22 /* Ethernet + two VLAN tags */
#define XG_REJ_Q4_MAX 68 /* IPv4 header with options + 8 */
#define XG_REJ_Q6_MAX 48 /* IPv6 header + 8 */

struct xg_rej_tcp4 {
	struct iphdr ip;
	struct tcphdr tcp;
};

struct xg_rej_tcp6 {
	struct ipv6hdr ip;
	struct tcphdr tcp;
};

struct xg_rej_pseudo6 {
	__u8 src[16];
	__u8 dst[16];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

struct xg_rej_icmp {
	__u8 type;
	__u8 code;
	__u16 check;
	__u32 unused;
};

static __always_inline __u16 xg_csum_fold(__s64 s)
{
	__u32 x = (__u32)s;
	x = (x & 0xffff) + (x >> 16);
	x = (x & 0xffff) + (x >> 16);
	return (__u16)~x;
}

/* Ones' complement sum of a stack buffer (size: a multiple of 4, at most 512). */
static __always_inline __s64 xg_csum(void *buf, __u32 size, __s64 seed)
{
	return bpf_csum_diff(0, 0, buf, size, seed);
}

static __always_inline __u16 xg_ip4_csum(struct iphdr *ip)
{
	ip->check = 0;
	return xg_csum_fold(xg_csum(ip, sizeof(*ip), 0));
}

static __always_inline void xg_swap_macs(__u8 *l2)
{
	__u8 t[6];
	__builtin_memcpy(t, l2, 6);
	__builtin_memcpy(l2, l2 + 6, 6);
	__builtin_memcpy(l2 + 6, t, 6);
}

/* v (known to lie in [min, max]) as an unsigned length the verifier sees lies there too. The
 * clamp is in the register the helper call will use: bounds the verifier learnt earlier can
 * be lost where the compiler spills v (Debian 12's 6.1 lost the lower one, and refused a
 * read it could not prove non-empty). */
static __always_inline __u64 xg_bound(__s32 v, const __u32 min, const __u32 max)
{
	__u64 u = (__u32)v;
	asm volatile("if %0 <= %2 goto +1\n\t%0 = %2\n\tif %0 >= %1 goto +1\n\t%0 = %1"
		     : "+r"(u) : "i"(min), "i"(max));
	return u;
}

static __always_inline int xg_frame_len(struct xdp_md *ctx)
{
	return (int)(ctx->data_end - ctx->data);
}

/* Shrink (or keep) the frame to len bytes. */
static __always_inline int xg_set_len(struct xdp_md *ctx, int len)
{
	int delta = len - xg_frame_len(ctx);
	if (delta > 0)
		return -1;
	if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
		return -1;
	return 0;
}

/* An ICMP/ICMPv6 error: grow the frame at its head by the reply's IP and ICMP headers, so
 * the original IP packet, now at l2off + grow, becomes the quote; write the (swapped) L2
 * header, the IP header `ip` of `iplen` bytes and `icmp` in front of it; cut after qlen
 * quoted bytes. */
static __always_inline int xg_rej_emit(struct xdp_md *ctx, __u8 *l2, __u32 l2off, void *ip,
				       __u32 iplen, struct xg_rej_icmp *icmp, __u64 qlen)
{
	int grow = iplen + sizeof(*icmp);
	if (bpf_xdp_adjust_head(ctx, -grow))
		return -1;
	if (bpf_xdp_store_bytes(ctx, 0, l2, XG_REJ_L2_MAX))
		return -1;
	if (bpf_xdp_store_bytes(ctx, l2off, ip, iplen))
		return -1;
	if (bpf_xdp_store_bytes(ctx, l2off + iplen, icmp, sizeof(*icmp)))
		return -1;
	return xg_set_len(ctx, l2off + grow + qlen);
}

/* Ethernet and VLAN tags: swap the MACs in place (the tags stay). */
static __always_inline int xg_rej_l2(struct xdp_md *ctx, __u8 *l2)
{
	if (bpf_xdp_load_bytes(ctx, 0, l2, XG_REJ_L2_MAX))
		return -1;
	xg_swap_macs(l2);
	return 0;
}

/* The TCP header of the RST answering `in`, which carried plen payload bytes: acknowledges
 * all of it (and SYN/FIN), and takes its sequence number from the ACK it got, if any. */
static __always_inline void xg_rst_tcp(struct tcphdr *out, struct tcphdr *in, __s32 plen)
{
	__u8 fl = ((__u8 *)in)[13];
	if (plen < 0)
		plen = 0;
	__u32 ack = bpf_ntohl(in->seq) + plen + ((fl & 0x02) ? 1 : 0) + ((fl & 0x01) ? 1 : 0);
	out->source = in->dest;
	out->dest = in->source;
	out->seq = (fl & 0x10) ? in->ack_seq : 0;
	out->ack_seq = bpf_htonl(ack);
	out->doff = 5;
	out->rst = 1;
	out->ack = 1;
}

/* Write the swapped MACs and the `len`-byte reply at l2off; cut the frame after it. */
static __always_inline int xg_rej_put(struct xdp_md *ctx, __u8 *l2, __u32 l2off, void *reply,
				      __u32 len)
{
	if (bpf_xdp_store_bytes(ctx, 0, l2, 12))
		return -1;
	if (bpf_xdp_store_bytes(ctx, l2off, reply, len))
		return -1;
	return xg_set_len(ctx, l2off + len);
}

static __always_inline int xg_reject_tcp4(struct xdp_md *ctx, __u32 l2off)
{
	__u8 l2[XG_REJ_L2_MAX];
	struct xg_rej_tcp4 in, out;
	if (xg_rej_l2(ctx, l2))
		return -1;
	if (bpf_xdp_load_bytes(ctx, l2off, &in.ip, sizeof(in.ip)))
		return -1;
	__u32 hl = in.ip.ihl * 4;
	if (hl < 20 || hl > 60)
		return -1;
	if (bpf_xdp_load_bytes(ctx, l2off + hl, &in.tcp, sizeof(in.tcp)))
		return -1;
	__u8 fl = ((__u8 *)&in.tcp)[13];
	if (fl & 0x04) /* never answer a RST */
		return -1;
	__u32 daddr_h = bpf_ntohl(in.ip.daddr);
	if ((daddr_h >> 28) == 0xe || daddr_h == 0xffffffff)
		return -1;
	__s32 plen = (__s32)bpf_ntohs(in.ip.tot_len) - (__s32)hl - (__s32)in.tcp.doff * 4;

	__builtin_memset(&out, 0, sizeof(out));
	out.ip.version = 4;
	out.ip.ihl = 5;
	out.ip.tot_len = bpf_htons(sizeof(out));
	out.ip.frag_off = bpf_htons(0x4000); /* DF */
	out.ip.ttl = 64;
	out.ip.protocol = IPPROTO_TCP;
	out.ip.saddr = in.ip.daddr;
	out.ip.daddr = in.ip.saddr;
	out.ip.check = xg_ip4_csum(&out.ip);
	xg_rst_tcp(&out.tcp, &in.tcp, plen);

	/* pseudo-header: saddr, daddr, zero, proto, TCP length */
	__u32 ph[3] = {out.ip.saddr, out.ip.daddr, bpf_htonl((IPPROTO_TCP << 16) | sizeof(out.tcp))};
	__s64 s = xg_csum(ph, sizeof(ph), 0);
	out.tcp.check = xg_csum_fold(xg_csum(&out.tcp, sizeof(out.tcp), s));

	return xg_rej_put(ctx, l2, l2off, &out, sizeof(out));
}

static __always_inline int xg_reject_tcp6(struct xdp_md *ctx, __u32 l2off)
{
	__u8 l2[XG_REJ_L2_MAX];
	struct xg_rej_tcp6 in, out;
	if (xg_rej_l2(ctx, l2))
		return -1;
	if (bpf_xdp_load_bytes(ctx, l2off, &in, sizeof(in)))
		return -1;
	if (in.ip.nexthdr != IPPROTO_TCP) /* behind extension headers: not answered */
		return -1;
	if (in.ip.daddr.in6_u.u6_addr8[0] == 0xff)
		return -1;
	__u8 fl = ((__u8 *)&in.tcp)[13];
	if (fl & 0x04)
		return -1;
	__s32 plen = (__s32)bpf_ntohs(in.ip.payload_len) - (__s32)in.tcp.doff * 4;

	__builtin_memset(&out, 0, sizeof(out));
	out.ip.version = 6;
	out.ip.payload_len = bpf_htons(sizeof(out.tcp));
	out.ip.nexthdr = IPPROTO_TCP;
	out.ip.hop_limit = 64;
	out.ip.saddr = in.ip.daddr;
	out.ip.daddr = in.ip.saddr;
	xg_rst_tcp(&out.tcp, &in.tcp, plen);

	struct xg_rej_pseudo6 ph;
	__builtin_memset(&ph, 0, sizeof(ph));
	__builtin_memcpy(ph.src, &out.ip.saddr, 16);
	__builtin_memcpy(ph.dst, &out.ip.daddr, 16);
	ph.len = bpf_htonl(sizeof(out.tcp));
	ph.nexthdr = IPPROTO_TCP;
	__s64 s = xg_csum(&ph, sizeof(ph), 0);
	out.tcp.check = xg_csum_fold(xg_csum(&out.tcp, sizeof(out.tcp), s));

	return xg_rej_put(ctx, l2, l2off, &out, sizeof(out));
}

struct xg_rej_icmp4_buf {
	struct xg_rej_icmp icmp;
	__u8 quote[XG_REJ_Q4_MAX];
};

static __always_inline int xg_reject_icmp4(struct xdp_md *ctx, __u32 l2off)
{
	__u8 l2[XG_REJ_L2_MAX];
	struct iphdr in, out;
	struct xg_rej_icmp4_buf b;
	if (xg_rej_l2(ctx, l2))
		return -1;
	if (bpf_xdp_load_bytes(ctx, l2off, &in, sizeof(in)))
		return -1;
	__u32 daddr_h = bpf_ntohl(in.daddr);
	if ((daddr_h >> 28) == 0xe || daddr_h == 0xffffffff)
		return -1;
	__u32 hl = in.ihl * 4;
	__s32 avail = xg_frame_len(ctx) - (__s32)l2off;
	__s32 tot = bpf_ntohs(in.tot_len);
	if (tot < avail)
		avail = tot;
	__s32 q = hl + 8;
	if (q > avail)
		q = avail;
	if (q < 20)
		return -1;
	__builtin_memset(&b, 0, sizeof(b));
	if (in.protocol == IPPROTO_ICMP) {
		__u8 t = 0; /* never answer an ICMP error */
		if (bpf_xdp_load_bytes(ctx, l2off + hl, &t, 1))
			return -1;
		if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12)
			return -1;
	}
	__u64 qlen = xg_bound(q, 20, XG_REJ_Q4_MAX);
	if (bpf_xdp_load_bytes(ctx, l2off, b.quote, qlen))
		return -1;

	__builtin_memset(&out, 0, sizeof(out));
	out.version = 4;
	out.ihl = 5;
	out.tot_len = bpf_htons(sizeof(out) + sizeof(b.icmp) + qlen);
	out.ttl = 64;
	out.protocol = IPPROTO_ICMP;
	out.saddr = in.daddr;
	out.daddr = in.saddr;
	out.check = xg_ip4_csum(&out);
	b.icmp.type = 3;  /* destination unreachable */
	b.icmp.code = 13; /* communication administratively prohibited */
	b.icmp.check = xg_csum_fold(xg_csum(&b, sizeof(b), 0));

	return xg_rej_emit(ctx, l2, l2off, &out, sizeof(out), &b.icmp, qlen);
}

struct xg_rej_icmp6_buf {
	struct xg_rej_pseudo6 ph;
	struct xg_rej_icmp icmp;
	__u8 quote[XG_REJ_Q6_MAX];
};

static __always_inline int xg_reject_icmp6(struct xdp_md *ctx, __u32 l2off)
{
	__u8 l2[XG_REJ_L2_MAX];
	struct ipv6hdr in, out;
	struct xg_rej_icmp6_buf b;
	if (xg_rej_l2(ctx, l2))
		return -1;
	if (bpf_xdp_load_bytes(ctx, l2off, &in, sizeof(in)))
		return -1;
	if (in.daddr.in6_u.u6_addr8[0] == 0xff)
		return -1;
	__s32 avail = xg_frame_len(ctx) - (__s32)l2off;
	__s32 tot = bpf_ntohs(in.payload_len) + sizeof(in);
	if (tot < avail)
		avail = tot;
	__s32 q = XG_REJ_Q6_MAX;
	if (q > avail)
		q = avail;
	if (q < (__s32)sizeof(in))
		return -1;
	__builtin_memset(&b, 0, sizeof(b));
	__u64 qlen = xg_bound(q, sizeof(in), XG_REJ_Q6_MAX);
	if (bpf_xdp_load_bytes(ctx, l2off, b.quote, qlen))
		return -1;
	if (in.nexthdr == XG_PROTO_ICMPV6 && qlen > sizeof(in) && b.quote[sizeof(in)] < 128)
		return -1; /* never answer an ICMPv6 error */

	__builtin_memset(&out, 0, sizeof(out));
	out.version = 6;
	out.payload_len = bpf_htons(sizeof(b.icmp) + qlen);
	out.nexthdr = XG_PROTO_ICMPV6;
	out.hop_limit = 64;
	out.saddr = in.daddr;
	out.daddr = in.saddr;
	__builtin_memcpy(b.ph.src, &out.saddr, 16);
	__builtin_memcpy(b.ph.dst, &out.daddr, 16);
	b.ph.len = bpf_htonl(sizeof(b.icmp) + qlen);
	b.ph.nexthdr = XG_PROTO_ICMPV6;
	b.icmp.type = 1; /* destination unreachable */
	b.icmp.code = 1; /* communication administratively prohibited */
	b.icmp.check = xg_csum_fold(xg_csum(&b, sizeof(b), 0));

	return xg_rej_emit(ctx, l2, l2off, &out, sizeof(out), &b.icmp, qlen);
}

/* Returns 0 when the frame now holds the reply to send back (XDP_TX). */
static __always_inline int xg_reject(struct xdp_md *ctx, struct xg_pkt *p)
{
	__u32 l2off = p->l2_off;
	if (l2off < 14 || l2off > XG_REJ_L2_MAX || p->tun_type || p->fragmented)
		return -1;
	if (p->proto == IPPROTO_TCP)
		return p->is_v6 ? xg_reject_tcp6(ctx, l2off) : xg_reject_tcp4(ctx, l2off);
	return p->is_v6 ? xg_reject_icmp6(ctx, l2off) : xg_reject_icmp4(ctx, l2off);
}

#endif
