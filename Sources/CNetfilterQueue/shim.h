#ifndef VPM_CNETFILTERQUEUE_H
#define VPM_CNETFILTERQUEUE_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
// glibc first: linux/libc-compat.h then skips its own in_addr/sockaddr_in, so the
// Glibc and CNetfilterQueue modules agree on those types.
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
// ctnetlink's message and attribute numbers, for Netfilter's Conntrack. Parsed with libmnl,
// not libnetfilter_conntrack: its nfct_nlmsg_parse calls exit(1) on an attribute of
// unexpected size. The kernel's uapi headers come before libnfnetlink's, whose older
// copies share their include guards (Swift cannot merge two enum nfnetlink_groups).
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
// nf_tables' message and attribute numbers, for Netfilter's NFTables (named counters).
#include <linux/netfilter/nf_tables.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#endif
