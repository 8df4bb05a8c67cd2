// See vpm_steering.h.
#define _GNU_SOURCE
#include "vpm_steering.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/magic.h>
#include <bpf/libbpf.h>

static const char *const map_names[] = {"vpm_rules", "vpm_ports", "vpm_sockets", "vpm_counters", "vpm_closed", "vpm_config",
                                        "vpm_last_refused", "vpm_instances"};
enum { MAP_COUNT = 8 };

static int fail(char *error, size_t size, int code, const char *what) {
    snprintf(error, size, "%s: %s", what, strerror(code < 0 ? -code : code));
    return code < 0 ? code : -code;
}

static int silent(enum libbpf_print_level level, const char *format, va_list arguments) {
    (void)level; (void)format; (void)arguments;
    return 0;
}

// Whether the pinned map `descriptor` has the type, sizes and flags this object declares.
static int same_shape(int descriptor, const struct bpf_map *map) {
    struct bpf_map_info info;
    __u32 length = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(descriptor, &info, &length) < 0) return 0;
    return info.type == (__u32)bpf_map__type(map) && info.key_size == bpf_map__key_size(map)
        && info.value_size == bpf_map__value_size(map) && info.max_entries == bpf_map__max_entries(map)
        && info.map_flags == bpf_map__map_flags(map);
}

// Attaches `program` by `attach` (or switches the link pinned at `path` to it): the pinned
// link's descriptor, or a negative errno.
static int attach_pinned(const char *path, struct bpf_program *program, struct bpf_link *(*attach)(const struct bpf_program *, int),
                         int target, char *error, size_t error_size, const char *what) {
    int link_fd = bpf_obj_get(path);
    if (link_fd >= 0) {
        // An earlier engine's link: the new program takes its place in one step.
        int updated = bpf_link_update(link_fd, bpf_program__fd(program), NULL);
        if (updated < 0) { close(link_fd); return fail(error, error_size, updated, what); }
        return link_fd;
    }
    struct bpf_link *link = attach(program, target);
    if (!link) return fail(error, error_size, errno, what);
    int pin = bpf_link__pin(link, path);
    if (pin < 0) { bpf_link__destroy(link); return fail(error, error_size, pin, what); }
    // Disconnected, destroying the handle leaves the descriptor open: it is the caller's.
    int descriptor = bpf_link__fd(link);
    bpf_link__disconnect(link);
    bpf_link__destroy(link);
    return descriptor;
}

int vpm_steer_attach(const char *pin_dir, int netns_fd, const char *cgroup_path, struct vpm_steer_descriptors *out,
                     char *error, size_t error_size) {
    char path[512];
    int result = 0;
    int *slots[MAP_COUNT] = {&out->rules, &out->ports, &out->sockets, &out->counters, &out->closed, &out->config, &out->last_refused, &out->instances};
    for (int i = 0; i < MAP_COUNT; i++) *slots[i] = -1;
    out->link = -1;
    out->took_over = 0;
    libbpf_set_print(silent);

    struct bpf_object *object = bpf_object__open_mem(vpm_steer_object, vpm_steer_object_size, NULL);
    if (!object) return fail(error, error_size, errno, "cannot open the BPF object");
    int pinned = 0;
    for (int i = 0; i < MAP_COUNT; i++) {
        struct bpf_map *map = bpf_object__find_map_by_name(object, map_names[i]);
        if (!map) { result = fail(error, error_size, ENOENT, map_names[i]); goto out; }
        snprintf(path, sizeof path, "%s/%s", pin_dir, map_names[i]);
        int existing = bpf_obj_get(path);
        if (existing >= 0 && !same_shape(existing, map)) {
            // Another version's map (reuse would not check its sizes): made anew instead.
            close(existing);
            unlink(path);
            existing = -1;
        }
        if (existing >= 0) {
            int reused = bpf_map__reuse_fd(map, existing);
            close(existing);
            if (reused < 0) { result = fail(error, error_size, reused, "cannot take over a pinned map"); goto out; }
            pinned++;
        }
    }
    out->took_over = pinned == MAP_COUNT;
    int loaded = bpf_object__load(object);
    if (loaded < 0) { result = fail(error, error_size, loaded, "the kernel refused the BPF program"); goto out; }
    for (int i = 0; i < MAP_COUNT; i++) {
        struct bpf_map *map = bpf_object__find_map_by_name(object, map_names[i]);
        snprintf(path, sizeof path, "%s/%s", pin_dir, map_names[i]);
        if (access(path, F_OK) != 0) {
            int pin = bpf_map__pin(map, path);
            if (pin < 0) { result = fail(error, error_size, pin, "cannot pin a map"); goto out; }
        }
        *slots[i] = fcntl(bpf_map__fd(map), F_DUPFD_CLOEXEC, 3);
        if (*slots[i] < 0) { result = fail(error, error_size, errno, "dup"); goto out; }
    }
    struct bpf_program *steer = bpf_object__find_program_by_name(object, "vpm_steer");
    struct bpf_program *observe = bpf_object__find_program_by_name(object, "vpm_observe");
    if (!steer || !observe) { result = fail(error, error_size, ENOENT, "vpm_steer, vpm_observe"); goto out; }
    int cgroup = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) { result = fail(error, error_size, errno, "cannot open the cgroup2 hierarchy"); goto out; }
    snprintf(path, sizeof path, "%s/observe", pin_dir);
    int observer = attach_pinned(path, observe, bpf_program__attach_cgroup, cgroup, error, error_size,
                                 "cannot attach the sockops observer to the cgroup2 hierarchy");
    close(cgroup);
    if (observer < 0) { result = observer; goto out; }
    close(observer);  // pinned
    snprintf(path, sizeof path, "%s/link", pin_dir);
    out->link = attach_pinned(path, steer, bpf_program__attach_netns, netns_fd, error, error_size,
                              "cannot attach the sk_lookup program to the network namespace");
    if (out->link < 0) { result = out->link; out->link = -1; goto out; }
out:
    if (result < 0) {
        for (int i = 0; i < MAP_COUNT; i++) if (*slots[i] >= 0) { close(*slots[i]); *slots[i] = -1; }
    }
    bpf_object__close(object);
    return result;
}

int vpm_steer_probe(char *error, size_t error_size) {
    libbpf_set_print(silent);
    struct bpf_object *object = bpf_object__open_mem(vpm_steer_object, vpm_steer_object_size, NULL);
    if (!object) return fail(error, error_size, errno, "cannot open the BPF object");
    int loaded = bpf_object__load(object);
    bpf_object__close(object);
    if (loaded < 0) return fail(error, error_size, loaded, "the kernel refused the sk_lookup program (it needs Linux 5.17 or later, BPF and sockmap)");
    return 0;
}

long long vpm_steer_link_netns(int link_fd) {
    struct bpf_link_info info;
    __u32 length = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(link_fd, &info, &length) < 0) return -errno;
    if (info.type != BPF_LINK_TYPE_NETNS) return -EINVAL;
    return (long long)info.netns.netns_ino;
}

int vpm_steer_is_bpffs(const char *path) {
    struct statfs status;
    if (statfs(path, &status) != 0) return -errno;
    return status.f_type == BPF_FS_MAGIC;
}

int vpm_steer_mount_bpffs(const char *path) {
    return mount("bpf", path, "bpf", 0, "mode=0700") == 0 ? 0 : -errno;
}

int vpm_steer_possible_cpus(void) { return libbpf_num_possible_cpus(); }

int vpm_steer_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
int vpm_steer_pidfd_getfd(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }
