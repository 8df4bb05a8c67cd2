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
#include <libnetfilter_queue/libnetfilter_queue.h>
#endif
