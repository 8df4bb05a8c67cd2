#ifndef VPM_CNETFILTERCONNTRACK_H
#define VPM_CNETFILTERCONNTRACK_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
// glibc first: linux/libc-compat.h then skips its own in_addr/sockaddr_in, so the
// Glibc and CNetfilterConntrack modules agree on those types (see CNetfilterQueue/shim.h).
#include <netinet/in.h>
#include <libmnl/libmnl.h>
// The kernel's uapi headers (ctnetlink's message and attribute numbers). Always these, never
// libnfnetlink's older copies under the same include guards: two different `enum
// nfnetlink_groups` in one Swift program do not merge ("NFNLGRP_NFTABLES from module
// CNetfilterQueue is not present in ...").
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
// No libnetfilter_conntrack: its nfct_nlmsg_parse calls exit(1) on an attribute of
// unexpected size, so Netfilter's Conntrack parses ctnetlink messages itself, with libmnl.
#endif
