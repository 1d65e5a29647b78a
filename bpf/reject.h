/* SPDX-License-Identifier: GPL-2.0 */
/* reject.h - turn a packet into its rejection (TCP RST or ICMP unreachable) in place. */
#ifndef XDPGATE_REJECT_H
#define XDPGATE_REJECT_H

#include "parse.h"

/* Returns 0 when the frame now holds the reply to send back (XDP_TX). */
static __always_inline int xg_reject(struct xdp_md *ctx, struct xg_pkt *p)
{
	return -1;
}

#endif
