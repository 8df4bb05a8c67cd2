// What Swift cannot import from the netfilter headers: function-like macros.
#ifndef VPM_NETFILTER_SHIM_H
#define VPM_NETFILTER_SHIM_H
#include <stddef.h>
#include <unistd.h>
// eventfd: Swift's Glibc module leaves sys/eventfd.h out (QueueWakeup uses it).
#include <sys/eventfd.h>

// MNL_SOCKET_BUFFER_SIZE calls sysconf(), so it is not a constant Swift can see.
static inline size_t vpm_mnl_socket_buffer_size(void) {
    long page = sysconf(_SC_PAGESIZE);
    return page < 8192L ? (size_t)page : 8192UL;
}

// NLA_ALIGN / NLMSG_ALIGN: netlink pads attributes and messages to 4 bytes.
static inline size_t vpm_netlink_align(size_t length) {
    return (length + 3U) & ~(size_t)3U;
}
#endif
