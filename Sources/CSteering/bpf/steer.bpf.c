// vpm's socket datapath (docs/datapaths.md): an sk_lookup program, attached to the network
// namespace, that hands a connection's first packet to the listening socket of the AID its
// client belongs to. No header changes, no conntrack: the accepted socket keeps the packet's
// own addresses, so the instance sees the initial port on its connections.
//
// The engine compiles its decisions into two maps: `vpm_rules` (client source and initial
// port → socket slot) and `vpm_sockets` (slot → the instance's listening socket). A managed
// port (`vpm_ports`) whose client no rule names, or whose AID has no socket, is refused
// (SK_DROP: a reset, or ICMP port unreachable). Loopback is left to the kernel's own lookup:
// local programs' connections are decided by the engine through the queue (local mode).
//
// Built by scripts/build-bpf.sh into steer_object.c, which is committed beside this file.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define LOOPBACK_IFINDEX 1

// One source rule for one initial port, in an LPM trie. The bits after `prefixlen` compare in
// order: protocol, initial port, client address (IPv4 as ::ffff:a.b.c.d), client port. An
// address rule is 160 bits long, a network /24 of IPv4 is 32 + 96 + 24, an address:port rule 176.
struct rule_key {
    __u32 prefixlen;
    __u8 protocol;
    __u8 reserved;
    __be16 port;
    __u8 address[16];
    __be16 client_port;
    __u16 padding;
};

struct port_key {
    __u8 protocol;
    __u8 reserved;
    __be16 port;
};

enum counter { STEERED, REFUSED_NO_RULE, REFUSED_NO_SOCKET, REFUSED_ADDRESS, COUNTERS };

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __type(key, struct rule_key);
    __type(value, __u32);  // the slot of the IPv4 socket; the IPv6 socket's is the next
    __uint(max_entries, 1 << 20);
    __uint(map_flags, BPF_F_NO_PREALLOC);
} vpm_rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, struct port_key);
    __type(value, __u32);
    __uint(max_entries, 4096);
} vpm_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_SOCKMAP);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1 << 18);  // slot = (UDP ? 1 << 17 : 0) | virtual port << 1 | IPv6
} vpm_sockets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, COUNTERS);
} vpm_counters SEC(".maps");

// The last connection refused, for the engine's log line ("refused connections").
struct refusal {
    __u32 client[4];
    __be16 client_port;
    __be16 port;
    __u32 reason;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct refusal);
    __uint(max_entries, 1);
} vpm_last_refused SEC(".maps");

static __always_inline int count(__u32 which, int verdict) {
    __u64 *value = bpf_map_lookup_elem(&vpm_counters, &which);
    if (value) *value += 1;
    return verdict;
}

static __always_inline int refuse(__u32 reason, struct rule_key *key) {
    __u32 zero = 0;
    struct refusal *last = bpf_map_lookup_elem(&vpm_last_refused, &zero);
    if (last) {
        __builtin_memcpy(last->client, key->address, 16);
        last->client_port = key->client_port;
        last->port = key->port;
        last->reason = reason;
    }
    return count(reason, SK_DROP);
}

// A socket bound to one address takes only connections to that address; the wildcard, all.
static __always_inline int bound_elsewhere(struct bpf_sk_lookup *ctx, struct bpf_sock *sk) {
    if (sk->family == AF_INET) return sk->src_ip4 != 0 && sk->src_ip4 != ctx->local_ip4;
    __u32 a = sk->src_ip6[0], b = sk->src_ip6[1], c = sk->src_ip6[2], d = sk->src_ip6[3];
    if ((a | b | c | d) == 0) return 0;
    if (ctx->family == AF_INET) {
        // A dual-stack socket bound to ::ffff:a.b.c.d.
        return !(a == 0 && b == 0 && c == bpf_htonl(0xffff) && d == ctx->local_ip4);
    }
    return a != ctx->local_ip6[0] || b != ctx->local_ip6[1] || c != ctx->local_ip6[2] || d != ctx->local_ip6[3];
}

SEC("sk_lookup")
int vpm_steer(struct bpf_sk_lookup *ctx) {
    if (ctx->ingress_ifindex == LOOPBACK_IFINDEX) return SK_PASS;
    __u8 protocol = ctx->protocol;
    __be16 port = bpf_htons((__u16)ctx->local_port);
    struct port_key managed = {.protocol = protocol, .port = port};
    if (!bpf_map_lookup_elem(&vpm_ports, &managed)) return SK_PASS;

    struct rule_key key = {.prefixlen = 176, .protocol = protocol, .port = port};
    __u32 family = ctx->family;
    if (family == AF_INET) {
        __u32 *words = (__u32 *)key.address;
        words[2] = bpf_htonl(0xffff);
        asm volatile("" ::: "memory");
        words[3] = ctx->remote_ip4;
        asm volatile("" ::: "memory");
    } else {
        __u32 *words = (__u32 *)key.address;
        asm volatile("" ::: "memory");
        words[0] = ctx->remote_ip6[0];
        // Separate loads: clang merges adjacent context reads into one through a computed
        // pointer, which the verifier refuses ("dereference of modified ctx ptr").
        asm volatile("" ::: "memory");
        words[1] = ctx->remote_ip6[1];
        asm volatile("" ::: "memory");
        words[2] = ctx->remote_ip6[2];
        asm volatile("" ::: "memory");
        words[3] = ctx->remote_ip6[3];
        asm volatile("" ::: "memory");
    }
    key.client_port = (__be16)ctx->remote_port;

    __u32 *slot = bpf_map_lookup_elem(&vpm_rules, &key);
    if (!slot) return refuse(REFUSED_NO_RULE, &key);

    __u32 index = *slot + (family == AF_INET6 ? 1 : 0);
    struct bpf_sock *sk = bpf_map_lookup_elem(&vpm_sockets, &index);
    if (!sk && family == AF_INET) {
        // An IPv6 socket that is not v6-only takes IPv4 connections too.
        index = *slot + 1;
        sk = bpf_map_lookup_elem(&vpm_sockets, &index);
    }
    if (!sk) return refuse(REFUSED_NO_SOCKET, &key);
    if (bound_elsewhere(ctx, sk)) {
        bpf_sk_release(sk);
        return refuse(REFUSED_ADDRESS, &key);
    }
    long error = bpf_sk_assign(ctx, sk, 0);
    bpf_sk_release(sk);
    if (error) return refuse(REFUSED_NO_SOCKET, &key);
    return count(STEERED, SK_PASS);
}

// The flow table without conntrack: a steered connection's end, with its final counters.
// `vpm_observe` (sockops, attached to the cgroup2 root, so it sees every socket) asks the
// kernel for state changes of the connections accepted on a managed port in this namespace,
// and records each one's close in `vpm_closed`, which the engine reads and empties. Live
// connections the engine reads from the sockets themselves (sock_diag).
struct closed_key {
    __u8 family;
    __u8 reserved;
    __be16 client_port;
    __be16 server_port;
    __u16 padding;
    __u32 client[4];
    __u32 server[4];
};

struct closed_value {
    __u64 bytes_to_server;
    __u64 bytes_to_client;
    __u64 closed_ns;
    __u32 segments_to_server;
    __u32 segments_to_client;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, struct closed_key);
    __type(value, struct closed_value);
    __uint(max_entries, 65536);
} vpm_closed SEC(".maps");

// [0]: the network namespace's cookie (SO_NETNS_COOKIE), written by the engine.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1);
} vpm_config SEC(".maps");

// The instances' virtual ports: protocol . port → the slot their listening sockets go to, and
// whether a socket must carry the mark of the sockets the engine binds (`vpm exec`) or any
// listener qualifies (an instance of the configuration). Written by the engine.
struct instance {
    __u32 slot;
    __u32 marked;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, struct port_key);
    __type(value, struct instance);
    __uint(max_entries, 65536);
} vpm_instances SEC(".maps");

#define INSTANCE_MARK 0x76706d02

SEC("sockops")
int vpm_observe(struct bpf_sock_ops *skops) {
    __u32 op = skops->op;
    if (op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_STATE_CB && op != BPF_SOCK_OPS_TCP_LISTEN_CB) return 1;
    __u32 zero = 0;
    __u64 *namespace = bpf_map_lookup_elem(&vpm_config, &zero);
    if (!namespace || *namespace != bpf_get_netns_cookie(skops)) return 1;
    if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
        // An instance's socket enters the socket map the moment it listens: no client meets
        // the gap until the engine's next look.
        struct port_key key = {.protocol = IPPROTO_TCP, .port = bpf_htons((__u16)skops->local_port)};
        struct instance *instance = bpf_map_lookup_elem(&vpm_instances, &key);
        if (!instance) return 1;
        struct bpf_sock *sk = skops->sk;
        if (!sk) return 1;
        if (instance->marked && sk->mark != INSTANCE_MARK) return 1;
        __u32 slot = instance->slot + (skops->family == AF_INET6 ? 1 : 0);
        bpf_sock_map_update(skops, &vpm_sockets, &slot, BPF_ANY);
        return 1;
    }
    if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
        struct port_key managed = {.protocol = IPPROTO_TCP, .port = bpf_htons((__u16)skops->local_port)};
        if (bpf_map_lookup_elem(&vpm_ports, &managed)) bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
        return 1;
    }
    if (skops->args[1] != BPF_TCP_CLOSE) return 1;
    struct closed_key key = {};
    __u32 family = skops->family;
    key.family = (__u8)family;
    key.client_port = (__be16)(skops->remote_port >> 16);
    key.server_port = bpf_htons((__u16)skops->local_port);
    if (family == AF_INET) {
        key.client[2] = bpf_htonl(0xffff);
        asm volatile("" ::: "memory");
        key.client[3] = skops->remote_ip4;
        asm volatile("" ::: "memory");
        key.server[2] = bpf_htonl(0xffff);
        key.server[3] = skops->local_ip4;
        asm volatile("" ::: "memory");
    } else {
        asm volatile("" ::: "memory");
        key.client[0] = skops->remote_ip6[0];
        asm volatile("" ::: "memory");
        key.client[1] = skops->remote_ip6[1];
        asm volatile("" ::: "memory");
        key.client[2] = skops->remote_ip6[2];
        asm volatile("" ::: "memory");
        key.client[3] = skops->remote_ip6[3];
        asm volatile("" ::: "memory");
        key.server[0] = skops->local_ip6[0];
        asm volatile("" ::: "memory");
        key.server[1] = skops->local_ip6[1];
        asm volatile("" ::: "memory");
        key.server[2] = skops->local_ip6[2];
        asm volatile("" ::: "memory");
        key.server[3] = skops->local_ip6[3];
        asm volatile("" ::: "memory");
    }
    struct closed_value value = {
        .bytes_to_server = skops->bytes_received,
        .bytes_to_client = skops->bytes_acked,
        .closed_ns = bpf_ktime_get_ns(),
        .segments_to_server = skops->segs_in,
        .segments_to_client = skops->segs_out,
    };
    bpf_map_update_elem(&vpm_closed, &key, &value, BPF_ANY);
    return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
