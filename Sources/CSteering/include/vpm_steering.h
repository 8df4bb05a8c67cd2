// The socket datapath's C bindings: the BPF object (bpf/steer.bpf.c, compiled into
// steer_object.c), its loading and attaching through libbpf, and the raw system calls Swift
// cannot reach (pidfd_open, pidfd_getfd). Reached only from the Steering module.
#ifndef VPM_STEERING_H
#define VPM_STEERING_H
#include <stddef.h>
#include <stdint.h>
#include <bpf/bpf.h>

extern const unsigned char vpm_steer_object[];
extern const unsigned long vpm_steer_object_size;

// What an attached program gives its user: one descriptor per map, and the link's.
struct vpm_steer_descriptors {
    int rules;
    int ports;
    int sockets;
    int counters;
    int closed;
    int config;
    int last_refused;
    int instances;
    int link;
    // 1 when the maps were taken over from an earlier engine's pins, 0 when made now.
    int took_over;
};

// Loads the program and attaches it to the network namespace `netns_fd`, its maps and link
// pinned under `pin_dir` (which exists, on a bpffs). Pins found there (an earlier engine's)
// are taken over: their maps keep their contents and the pinned link is switched to the new
// program in one step, so steering never stops. Returns 0, or a negative errno with a
// message in `error`.
// The observer (sockops) is attached to the cgroup2 hierarchy at `cgroup_path`, pinned as `observe`.
int vpm_steer_attach(const char *pin_dir, int netns_fd, const char *cgroup_path, struct vpm_steer_descriptors *out,
                     char *error, size_t error_size);

// Loads the program (and makes its maps) without attaching or pinning anything, to learn
// whether this kernel can run it: 0, or a negative errno with a message in `error`.
int vpm_steer_probe(char *error, size_t error_size);

// The network namespace inode a pinned link is attached to (0: detached, its namespace
// gone), or a negative errno.
long long vpm_steer_link_netns(int link_fd);

// Whether `path` is on a bpf filesystem (1), not (0), or a negative errno.
int vpm_steer_is_bpffs(const char *path);
// Mounts a bpf filesystem on `path` (as systemd does on /sys/fs/bpf): 0 or a negative errno.
int vpm_steer_mount_bpffs(const char *path);

// The number of possible CPUs (a per-CPU map's value holds one slot each), or a negative errno.
int vpm_steer_possible_cpus(void);

// pidfd_open(2) and pidfd_getfd(2): a copy of descriptor `fd` of process `pid`. -1 and errno.
int vpm_steer_pidfd_open(int pid);
int vpm_steer_pidfd_getfd(int pidfd, int fd);
#endif
