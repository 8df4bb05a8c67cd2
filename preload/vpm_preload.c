/*
 * vpm preload shim: LD_PRELOAD library for programs started by `vpm exec`.
 *
 * It intercepts bind(), getsockname() and connect() and nothing else:
 *   - bind() of a multiplexed initial port (VPM_PORTS) asks the vpm engine for a virtual
 *     port and binds that instead; it never binds the initial port itself;
 *   - getsockname() reports the initial port again for sockets bound that way (listening
 *     and accepted sockets alike);
 *   - connect() to a multiplexed port registers the connection (local and remote
 *     address:port) with the engine before connecting; registration is advisory.
 *
 * Without VPM_AID and VPM_PORTS in the environment every call passes straight through.
 * Protocol, environment and limits: preload/README.md.
 *
 * Build: cc -shared -fPIC -O2 -Wall -Wextra -Werror -o libvpm-preload.so vpm_preload.c
 * (links only libc; dlsym and pthread_once are in libc since glibc 2.34).
 *
 * Intercept paths allocate nothing (stack buffers only), take no locks (the port table
 * is atomics only, so it is also safe across fork()), format their own text (no stdio),
 * write each stderr line with a single write(2), and leave errno as it was on every path
 * that succeeds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* glibc declares bind/connect/getsockname with transparent unions under _GNU_SOURCE;
 * our definitions must match the declarations. */
#if defined(__GLIBC__) && defined(__USE_GNU) && defined(__GNUC__) && !defined(__cplusplus)
#define VPM_CONST_ADDR_ARG __CONST_SOCKADDR_ARG
#define VPM_ADDR_ARG __SOCKADDR_ARG
#define VPM_CONST_ADDR(a) ((a).__sockaddr__)
#define VPM_ADDR(a) ((a).__sockaddr__)
#else
#define VPM_CONST_ADDR_ARG const struct sockaddr *
#define VPM_ADDR_ARG struct sockaddr *
#define VPM_CONST_ADDR(a) (a)
#define VPM_ADDR(a) (a)
#endif

#define VPM_EXPORT __attribute__((visibility("default")))

#define MAX_PORTS 64          /* entries of VPM_PORTS */
#define MAX_MAPPINGS 256      /* virtual ports this process (or its parent before fork) bound */
#define AID_MAX 255
#define TIMEOUT_SECONDS 5         /* default; VPM_TIMEOUT overrides */
#define TIMEOUT_MAX_SECONDS 86400
#define DEFAULT_SOCKET "/run/vpm/vpm.sock"

enum transport { T_NONE = 0, T_TCP = 1, T_UDP = 2 };

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*getsockname_fn)(int, struct sockaddr *, socklen_t *);

static bind_fn real_bind;
static connect_fn real_connect;
static getsockname_fn real_getsockname;

/* Read-only after init(). */
static struct {
    bool active;
    bool debug;
    char aid[AID_MAX + 1];
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool socket_path_too_long;
    unsigned timeout_seconds;
    size_t port_count;
    struct { uint16_t port; uint8_t transport; } ports[MAX_PORTS];
} cfg;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* virtual port -> initial port. Slots are claimed with fetch_add and never freed; an entry
 * is (1 << 40) | transport << 32 | initial << 16 | virtual, 0 while being written. */
static _Atomic uint64_t mappings[MAX_MAPPINGS];
static atomic_uint mapping_count;

/* ------------------------------------------------------------------------------------ */
/* Text without stdio or malloc                                                          */

struct text {
    char *p;
    size_t cap;   /* including the terminating NUL */
    size_t len;
};

#define TEXT(buffer) { (buffer), sizeof(buffer), 0 }

static void t_mem(struct text *t, const char *s, size_t n) {
    if (t->cap == 0) return;
    size_t room = t->cap - 1 - t->len;
    if (n > room) n = room;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void t_str(struct text *t, const char *s) { t_mem(t, s, strlen(s)); }

static void t_char(struct text *t, char c) { t_mem(t, &c, 1); }

static void t_uint(struct text *t, unsigned long v) {
    char digits[24];
    size_t n = 0;
    do { digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10); v /= 10; } while (v != 0);
    t_mem(t, digits + sizeof(digits) - n, n);
}

static void t_int(struct text *t, long v) {
    if (v < 0) { t_char(t, '-'); t_uint(t, (unsigned long)(-(v + 1)) + 1); }
    else t_uint(t, (unsigned long)v);
}

/* A JSON string literal, quotes included. */
static void t_json_string(struct text *t, const char *s) {
    static const char hex[] = "0123456789abcdef";
    t_char(t, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { t_char(t, '\\'); t_char(t, (char)c); }
        else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            t_mem(t, e, sizeof(e));
        } else t_char(t, (char)c);
    }
    t_char(t, '"');
}

/* Text for a one-line message: control characters become spaces. */
static void t_printable(struct text *t, const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        t_char(t, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
    }
}

static const char *transport_name(int transport) { return transport == T_UDP ? "udp" : "tcp"; }

static void t_port(struct text *t, uint16_t port, int transport) {
    t_uint(t, port);
    t_char(t, '/');
    t_str(t, transport_name(transport));
}

/* address text as inet_ntop writes it, then :port (v6 in brackets) */
static void t_address(struct text *t, const struct sockaddr_storage *ss, bool with_port) {
    char host[INET6_ADDRSTRLEN];
    uint16_t port = 0;
    bool v6 = ss->ss_family == AF_INET6;
    if (v6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host))) host[0] = '\0';
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host))) host[0] = '\0';
        port = ntohs(a->sin_port);
    }
    if (!with_port) { t_str(t, host); return; }
    if (v6) t_char(t, '[');
    t_str(t, host);
    if (v6) t_char(t, ']');
    t_char(t, ':');
    t_uint(t, port);
}

/* One line on stderr, one write(2) so concurrent lines do not interleave. */
static void emit(struct text *t) {
    if (t->len == 0 || t->p[t->len - 1] != '\n') {
        if (t->len + 1 >= t->cap && t->len > 0) t->len--;   /* make room for the newline */
        t->p[t->len] = '\0';
        t_char(t, '\n');
    }
    size_t off = 0;
    while (off < t->len) {
        ssize_t n = write(STDERR_FILENO, t->p + off, t->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
}

static const char *error_text(int code) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char *s = strerrordesc_np(code);   /* no locale, no allocation */
    return s ? s : "unknown error";
#else
    return strerror(code);
#endif
}

/* ------------------------------------------------------------------------------------ */
/* Configuration                                                                         */

static void warn_config(const char *what, const char *value, size_t n) {
    char buffer[512];
    struct text t = TEXT(buffer);
    t_str(&t, "vpm: ");
    t_str(&t, what);
    t_printable(&t, value, n);
    emit(&t);
}

/* "PORT/tcp" or "PORT/udp", spaces around allowed. */
static bool parse_port_entry(const char *s, size_t n, uint16_t *port, uint8_t *transport) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    unsigned long value = 0;
    size_t digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        value = value * 10 + (unsigned long)(s[i++] - '0');
        if (++digits > 5) return false;
    }
    if (digits == 0 || value == 0 || value > 65535) return false;
    if (n - i != 4 || s[i] != '/') return false;
    if (strncasecmp(s + i + 1, "tcp", 3) == 0) *transport = T_TCP;
    else if (strncasecmp(s + i + 1, "udp", 3) == 0) *transport = T_UDP;
    else return false;
    *port = (uint16_t)value;
    return true;
}

/* VPM_TIMEOUT: whole seconds, 1 .. 86400. */
static unsigned parse_timeout(const char *s) {
    if (!s || !s[0]) return TIMEOUT_SECONDS;
    unsigned long value = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && value <= TIMEOUT_MAX_SECONDS) value = value * 10 + (unsigned long)(*p++ - '0');
    if (*p != '\0' || value == 0 || value > TIMEOUT_MAX_SECONDS) {
        warn_config("VPM_TIMEOUT is not a number of seconds from 1 to 86400, using 5: ", s, 32);
        return TIMEOUT_SECONDS;
    }
    return (unsigned)value;
}

static void init(void) {
    real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    real_getsockname = (getsockname_fn)dlsym(RTLD_NEXT, "getsockname");

    const char *debug = getenv("VPM_DEBUG");
    cfg.debug = debug && debug[0] == '1';

    const char *aid = getenv("VPM_AID");
    const char *ports = getenv("VPM_PORTS");
    if (!aid || !aid[0] || !ports || !ports[0]) return;
    if (strlen(aid) > AID_MAX) {
        warn_config("VPM_AID is longer than 255 bytes, vpm interception is off: ", aid, 64);
        return;
    }
    memcpy(cfg.aid, aid, strlen(aid) + 1);

    const char *path = getenv("VPM_SOCKET");
    if (!path || !path[0]) path = DEFAULT_SOCKET;
    size_t plen = strlen(path);
    if (plen >= sizeof(cfg.socket_path)) {
        cfg.socket_path_too_long = true;
        plen = sizeof(cfg.socket_path) - 1;
    }
    memcpy(cfg.socket_path, path, plen);
    cfg.socket_path[plen] = '\0';

    for (const char *p = ports; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        uint16_t port;
        uint8_t transport;
        if (parse_port_entry(p, n, &port, &transport)) {
            if (cfg.port_count < MAX_PORTS) {
                cfg.ports[cfg.port_count].port = port;
                cfg.ports[cfg.port_count].transport = transport;
                cfg.port_count++;
            } else warn_config("VPM_PORTS has more than 64 entries, ignoring: ", p, n);
        } else if (n > 0) {
            warn_config("VPM_PORTS entry is not PORT/tcp or PORT/udp, ignoring: ", p, n);
        }
        if (!end) break;
        p = end + 1;
    }
    cfg.timeout_seconds = parse_timeout(getenv("VPM_TIMEOUT"));
    cfg.active = cfg.port_count > 0;

    if (cfg.active && cfg.debug) {
        char buffer[1024];
        struct text t = TEXT(buffer);
        t_str(&t, "vpm: debug: pid ");
        t_int(&t, (long)getpid());
        t_str(&t, ": intercepting for AID ");
        t_printable(&t, cfg.aid, AID_MAX);
        t_str(&t, ", ports ");
        for (size_t i = 0; i < cfg.port_count; i++) {
            if (i) t_char(&t, ',');
            t_port(&t, cfg.ports[i].port, cfg.ports[i].transport);
        }
        t_str(&t, ", control socket ");
        t_str(&t, cfg.socket_path);
        t_str(&t, ", timeout ");
        t_uint(&t, cfg.timeout_seconds);
        t_str(&t, " s");
        emit(&t);
    }
}

static void ensure_init(void) {
    int saved = errno;
    pthread_once(&init_once, init);
    errno = saved;
}

__attribute__((constructor)) static void vpm_preload_constructor(void) { ensure_init(); }

static bool port_listed(uint16_t port, int transport) {
    for (size_t i = 0; i < cfg.port_count; i++)
        if (cfg.ports[i].port == port && cfg.ports[i].transport == transport) return true;
    return false;
}

/* ------------------------------------------------------------------------------------ */
/* Sockets                                                                               */

/* tcp or udp for an inet socket, T_NONE for anything else (raw, SCTP, ping, ...). */
static int socket_transport(int fd) {
    int type = 0, protocol = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return T_NONE;
    len = sizeof(protocol);
    bool known = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0;
    if (type == SOCK_STREAM)
        return (!known || protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP) ? T_TCP : T_NONE;
    if (type == SOCK_DGRAM)
        return (!known || protocol == IPPROTO_UDP) ? T_UDP : T_NONE;
    return T_NONE;
}

static int socket_domain(int fd) {
    int domain = -1;
    socklen_t len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return -1;
    return domain;
}

static uint16_t storage_port(const struct sockaddr_storage *ss) {
    uint16_t port;   /* sin_port and sin6_port are both at offset 2 */
    memcpy(&port, (const char *)ss + offsetof(struct sockaddr_in, sin_port), sizeof(port));
    return ntohs(port);
}

static void storage_set_port(struct sockaddr_storage *ss, uint16_t port) {
    uint16_t net = htons(port);
    memcpy((char *)ss + offsetof(struct sockaddr_in, sin_port), &net, sizeof(net));
}

/* Copies an inet address the kernel would accept into *ss. AF_UNSPEC with INADDR_ANY on
 * an AF_INET socket counts: the kernel binds it like AF_INET. */
static bool copy_inet_address(int fd, const struct sockaddr *addr, socklen_t len, bool for_bind,
                              struct sockaddr_storage *ss) {
    if (!addr || len < sizeof(sa_family_t) || len > sizeof(*ss)) return false;
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, addr, len);
    switch (ss->ss_family) {
    case AF_INET:
        return len >= sizeof(struct sockaddr_in);
    case AF_INET6:
        return len >= offsetof(struct sockaddr_in6, sin6_scope_id);   /* SIN6_LEN_RFC2133 */
    case AF_UNSPEC:
        if (!for_bind || len < sizeof(struct sockaddr_in)) return false;
        if (((struct sockaddr_in *)ss)->sin_addr.s_addr != htonl(INADDR_ANY)) return false;
        return socket_domain(fd) == AF_INET;
    default:
        return false;
    }
}

static bool is_wildcard(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

/* ------------------------------------------------------------------------------------ */
/* Mapping table                                                                         */

static uint64_t mapping_entry(uint16_t virtual_port, uint16_t initial_port, int transport) {
    return (1ull << 40) | ((uint64_t)transport << 32) | ((uint64_t)initial_port << 16) | virtual_port;
}

static bool mapping_add(uint16_t virtual_port, uint16_t initial_port, int transport) {
    uint64_t entry = mapping_entry(virtual_port, initial_port, transport);
    unsigned used = atomic_load_explicit(&mapping_count, memory_order_acquire);
    if (used > MAX_MAPPINGS) used = MAX_MAPPINGS;
    for (unsigned i = 0; i < used; i++) {
        uint64_t e = atomic_load_explicit(&mappings[i], memory_order_acquire);
        if (e == entry) return true;
        /* same virtual port and transport, another initial port: replace it */
        if (e && (uint16_t)e == virtual_port && ((e >> 32) & 0xff) == (uint64_t)transport) {
            atomic_store_explicit(&mappings[i], entry, memory_order_release);
            return true;
        }
    }
    unsigned slot = atomic_fetch_add_explicit(&mapping_count, 1, memory_order_acq_rel);
    if (slot >= MAX_MAPPINGS) {
        atomic_store_explicit(&mapping_count, MAX_MAPPINGS, memory_order_release);
        return false;
    }
    atomic_store_explicit(&mappings[slot], entry, memory_order_release);
    return true;
}

/* Initial port for a virtual port, 0 when not ours. transport T_NONE: look it up lazily. */
static uint16_t mapping_initial(int fd, uint16_t virtual_port) {
    unsigned used = atomic_load_explicit(&mapping_count, memory_order_acquire);
    if (used > MAX_MAPPINGS) used = MAX_MAPPINGS;
    int transport = -1;
    for (unsigned i = 0; i < used; i++) {
        uint64_t e = atomic_load_explicit(&mappings[i], memory_order_acquire);
        if (!e || (uint16_t)e != virtual_port) continue;
        if (transport < 0) transport = socket_transport(fd);
        if ((int)((e >> 32) & 0xff) == transport) return (uint16_t)(e >> 16);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Minimal JSON reading: top-level keys of one object                                    */

static const char *j_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* p at '"': returns just past the closing quote, or NULL */
static const char *j_skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') { p++; continue; }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *j_skip_value(const char *p, const char *end) {
    p = j_ws(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return j_skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') { p = j_skip_string(p, end); if (!p) return NULL; continue; }
            if (*p == '{' || *p == '[') depth++;
            else if (*p == '}' || *p == ']') { if (--depth == 0) return p + 1; }
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\r' && *p != '\n')
        p++;
    return p;
}

/* The value of top-level `key` in the object at buf, or NULL. */
static const char *j_lookup(const char *buf, const char *end, const char *key) {
    size_t keylen = strlen(key);
    const char *p = j_ws(buf, end);
    if (p >= end || *p != '{') return NULL;
    p++;
    for (;;) {
        p = j_ws(p, end);
        if (p >= end || *p == '}' || *p != '"') return NULL;
        const char *k = p + 1;
        const char *after = j_skip_string(p, end);
        if (!after) return NULL;
        bool match = (size_t)(after - 1 - k) == keylen && memcmp(k, key, keylen) == 0;
        p = j_ws(after, end);
        if (p >= end || *p != ':') return NULL;
        p = j_ws(p + 1, end);
        if (match) return p;
        p = j_skip_value(p, end);
        if (!p) return NULL;
        p = j_ws(p, end);
        if (p < end && *p == ',') { p++; continue; }
        return NULL;
    }
}

static void utf8_append(struct text *t, unsigned long cp) {
    char b[4];
    if (cp < 0x80) { b[0] = (char)cp; t_mem(t, b, 1); }
    else if (cp < 0x800) { b[0] = (char)(0xc0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3f)); t_mem(t, b, 2); }
    else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f)); t_mem(t, b, 3);
    } else {
        b[0] = (char)(0xf0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); b[3] = (char)(0x80 | (cp & 0x3f)); t_mem(t, b, 4);
    }
}

static bool hex4(const char *p, const char *end, unsigned long *v) {
    if (end - p < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        *v = *v * 16 + (unsigned long)d;
    }
    return true;
}

/* Decodes the JSON string at p (at '"') into out, control characters as spaces. */
static bool j_string(const char *p, const char *end, struct text *out) {
    if (!p || p >= end || *p != '"') return false;
    for (p++; p < end; p++) {
        char c = *p;
        if (c == '"') return true;
        if (c != '\\') { t_printable(out, &c, 1); continue; }
        if (++p >= end) return false;
        switch (*p) {
        case 'n': case 'r': case 't': case 'b': case 'f': t_char(out, ' '); break;
        case 'u': {
            unsigned long cp;
            if (!hex4(p + 1, end, &cp)) return false;
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && end - p > 6 && p[1] == '\\' && p[2] == 'u') {
                unsigned long low;
                if (hex4(p + 3, end, &low) && low >= 0xdc00 && low < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                    p += 6;
                }
            }
            if (cp < 0x20 || cp == 0x7f || (cp >= 0xd800 && cp < 0xe000)) t_char(out, ' ');
            else utf8_append(out, cp);
            break;
        }
        default: t_char(out, *p); break;   /* \" \\ \/ */
        }
    }
    return false;
}

/* A non-negative integer value (no fraction, no exponent). */
static bool j_uint(const char *p, const char *end, unsigned long max, unsigned long *v) {
    if (!p || p >= end || *p < '0' || *p > '9') return false;
    *v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        *v = *v * 10 + (unsigned long)(*p++ - '0');
        if (*v > max) return false;
    }
    return p >= end || *p == ',' || *p == '}' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';
}

/* ------------------------------------------------------------------------------------ */
/* Talking to the engine                                                                 */

enum exchange {
    EX_OK,            /* response holds one line */
    EX_NO_ANSWER,     /* nobody listens, timed out, or hung up without answering */
    EX_UNREACHABLE,   /* other failure: sys_errno says which */
};

static enum exchange engine_exchange(const char *request, size_t request_len, char *response,
                                     size_t cap, size_t *response_len, int *sys_errno) {
    *response_len = 0;
    *sys_errno = 0;
    if (cfg.socket_path_too_long) { *sys_errno = ENAMETOOLONG; return EX_UNREACHABLE; }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { *sys_errno = errno; return EX_UNREACHABLE; }
    struct timeval timeout = { .tv_sec = (time_t)cfg.timeout_seconds, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));

    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, cfg.socket_path, strlen(cfg.socket_path) + 1);

    enum exchange result = EX_OK;
    int rc;
    do rc = real_connect(fd, (struct sockaddr *)&address, sizeof(address));
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        *sys_errno = errno;
        switch (errno) {
        case ENOENT: case ECONNREFUSED: case ENOTDIR: case EAGAIN: case ETIMEDOUT:
            result = EX_NO_ANSWER; break;
        default:
            result = EX_UNREACHABLE; break;
        }
        goto done;
    }

    for (size_t off = 0; off < request_len;) {
        ssize_t n = send(fd, request + off, request_len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *sys_errno = errno;
            result = (errno == EAGAIN || errno == EPIPE || errno == ECONNRESET) ? EX_NO_ANSWER : EX_UNREACHABLE;
            goto done;
        }
        off += (size_t)n;
    }

    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) break;   /* full: the caller finds no newline */
        ssize_t n = recv(fd, response + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *sys_errno = errno;
            result = (errno == EAGAIN || errno == ECONNRESET) ? EX_NO_ANSWER : EX_UNREACHABLE;
            goto done;
        }
        if (n == 0) break;
        char *newline = memchr(response + len, '\n', (size_t)n);
        len += (size_t)n;
        if (newline) { len = (size_t)(newline - response); break; }
    }
    response[len] = '\0';
    *response_len = len;
    if (len == 0) result = EX_NO_ANSWER;

done:
    close(fd);
    return result;
}

/* The reason text after "...: " for a failed exchange. */
static void t_exchange_failure(struct text *t, enum exchange ex, int sys_errno) {
    if (ex == EX_NO_ANSWER) {
        t_str(t, "the vpm engine does not answer at ");
        t_str(t, cfg.socket_path);
        t_str(t, " (is `vpm run` running?)");
    } else {
        t_str(t, "cannot reach the vpm engine at ");
        t_str(t, cfg.socket_path);
        t_str(t, ": ");
        t_str(t, error_text(sys_errno));
    }
}

static void t_engine_error(struct text *t, const char *message) {
    t_str(t, message);
    t_str(t, " (control socket ");
    t_str(t, cfg.socket_path);
    t_char(t, ')');
}

static void t_unexpected(struct text *t, const char *response, size_t len) {
    t_str(t, "the vpm engine at ");
    t_str(t, cfg.socket_path);
    t_str(t, " sent an answer this library cannot read: ");
    t_printable(t, response, len > 200 ? 200 : len);
}

static int errno_from_name(const char *name) {
    static const struct { const char *name; int code; } names[] = {
        { "EADDRINUSE", EADDRINUSE }, { "EADDRNOTAVAIL", EADDRNOTAVAIL },
        { "EACCES", EACCES }, { "EPERM", EPERM },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i].name) == 0) return names[i].code;
    return EADDRNOTAVAIL;
}

/* ------------------------------------------------------------------------------------ */
/* bind                                                                                  */

static void bind_failure_line(uint16_t port, int transport, const struct text *reason) {
    char buffer[1024];
    struct text t = TEXT(buffer);
    t_str(&t, "vpm: cannot bind port ");
    t_port(&t, port, transport);
    t_str(&t, " for AID ");
    t_printable(&t, cfg.aid, AID_MAX);
    t_str(&t, ": ");
    t_str(&t, reason->p);
    emit(&t);
}

/* Asks the engine for the virtual port. Returns it, or 0 with *err set (and the line printed). */
static uint16_t request_virtual_port(uint16_t port, int transport, int *err) {
    char request[512];
    struct text rq = TEXT(request);
    t_str(&rq, "{\"command\":\"bind\",\"aid\":");
    t_json_string(&rq, cfg.aid);
    t_str(&rq, ",\"initialPort\":");
    t_uint(&rq, port);
    t_str(&rq, ",\"transport\":\"");
    t_str(&rq, transport_name(transport));
    t_str(&rq, "\"}\n");

    char response[4096];
    size_t response_len;
    int sys_errno;
    enum exchange ex = engine_exchange(request, rq.len, response, sizeof(response), &response_len, &sys_errno);

    char reason_buffer[768];
    struct text reason = TEXT(reason_buffer);
    *err = EADDRNOTAVAIL;
    if (ex != EX_OK) {
        t_exchange_failure(&reason, ex, sys_errno);
    } else {
        const char *end = response + response_len;
        const char *error = j_lookup(response, end, "error");
        unsigned long virtual_port;
        if (error && *error == '"') {
            char message[512];
            struct text m = TEXT(message);
            if (!j_string(error, end, &m) || m.len == 0) t_str(&m, "the engine refused");
            t_engine_error(&reason, message);
            const char *code = j_lookup(response, end, "errorCode");
            char name[32];
            struct text n = TEXT(name);
            if (code && j_string(code, end, &n)) *err = errno_from_name(name);
        } else if (j_uint(j_lookup(response, end, "virtualPort"), end, 65535, &virtual_port) &&
                   virtual_port > 0) {
            return (uint16_t)virtual_port;
        } else {
            t_unexpected(&reason, response, response_len);
        }
    }
    bind_failure_line(port, transport, &reason);
    return 0;
}

VPM_EXPORT int bind(int fd, VPM_CONST_ADDR_ARG arg, socklen_t len) {
    const struct sockaddr *addr = VPM_CONST_ADDR(arg);
    ensure_init();
    if (!real_bind) { errno = ENOSYS; return -1; }
    if (!cfg.active) return real_bind(fd, addr, len);

    int saved = errno;
    struct sockaddr_storage ss;
    if (!copy_inet_address(fd, addr, len, true, &ss)) { errno = saved; return real_bind(fd, addr, len); }
    uint16_t port = storage_port(&ss);
    if (port == 0) { errno = saved; return real_bind(fd, addr, len); }
    int transport = socket_transport(fd);
    if (transport == T_NONE || !port_listed(port, transport)) { errno = saved; return real_bind(fd, addr, len); }

    /* Already bound: the kernel would refuse with EINVAL; do not take a virtual port. */
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if (real_getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) return -1;
    if ((local.ss_family == AF_INET || local.ss_family == AF_INET6) && storage_port(&local) != 0) {
        errno = EINVAL;
        return -1;
    }

    int err;
    uint16_t virtual_port = request_virtual_port(port, transport, &err);
    if (virtual_port == 0) { errno = err; return -1; }

    storage_set_port(&ss, virtual_port);
    errno = saved;
    int rc = real_bind(fd, (const struct sockaddr *)&ss, len);
    int bind_errno = errno;
    if (rc == 0) {
        if (!mapping_add(virtual_port, port, transport)) {
            char buffer[512];
            struct text t = TEXT(buffer);
            t_str(&t, "vpm: more than 256 virtual ports in this process; getsockname() will show virtual port ");
            t_uint(&t, virtual_port);
            t_str(&t, " instead of ");
            t_port(&t, port, transport);
            emit(&t);
        }
        if (cfg.debug) {
            char buffer[512];
            struct text t = TEXT(buffer);
            t_str(&t, "vpm: debug: bind fd ");
            t_int(&t, fd);
            t_char(&t, ' ');
            t_address(&t, &ss, false);
            t_str(&t, " port ");
            t_port(&t, port, transport);
            t_str(&t, " -> virtual port ");
            t_uint(&t, virtual_port);
            t_str(&t, " (AID ");
            t_printable(&t, cfg.aid, AID_MAX);
            t_char(&t, ')');
            emit(&t);
        }
        errno = saved;
    } else {
        char buffer[768];
        struct text t = TEXT(buffer);
        t_str(&t, "vpm: cannot bind port ");
        t_port(&t, port, transport);
        t_str(&t, " for AID ");
        t_printable(&t, cfg.aid, AID_MAX);
        t_str(&t, ": binding its virtual port ");
        t_uint(&t, virtual_port);
        t_str(&t, " failed: ");
        t_str(&t, error_text(bind_errno));
        emit(&t);
        errno = bind_errno;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* getsockname                                                                           */

VPM_EXPORT int getsockname(int fd, VPM_ADDR_ARG arg, socklen_t *len) {
    struct sockaddr *addr = VPM_ADDR(arg);
    ensure_init();
    if (!real_getsockname) { errno = ENOSYS; return -1; }
    socklen_t given = len ? *len : 0;
    int rc = real_getsockname(fd, addr, len);
    if (rc != 0 || !cfg.active || atomic_load_explicit(&mapping_count, memory_order_relaxed) == 0) return rc;
    /* the port is at offset 2..3 for both families; the kernel truncated to `given` */
    if (!addr || given < offsetof(struct sockaddr_in, sin_port) + sizeof(in_port_t)) return rc;
    sa_family_t family;
    memcpy(&family, addr, sizeof(family));
    if (family != AF_INET && family != AF_INET6) return rc;
    uint16_t port;
    memcpy(&port, (char *)addr + offsetof(struct sockaddr_in, sin_port), sizeof(port));
    port = ntohs(port);
    if (port == 0) return rc;
    int saved = errno;
    uint16_t initial = mapping_initial(fd, port);
    if (initial) {
        uint16_t net = htons(initial);
        memcpy((char *)addr + offsetof(struct sockaddr_in, sin_port), &net, sizeof(net));
        if (cfg.debug) {
            char buffer[256];
            struct text t = TEXT(buffer);
            t_str(&t, "vpm: debug: getsockname fd ");
            t_int(&t, fd);
            t_str(&t, ": virtual port ");
            t_uint(&t, port);
            t_str(&t, " shown as ");
            t_uint(&t, initial);
            emit(&t);
        }
    }
    errno = saved;
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* connect                                                                               */

/* The source address the routing table picks for `remote` (a UDP probe; sends nothing). */
static bool route_source(const struct sockaddr_storage *remote, socklen_t remote_len,
                         struct sockaddr_storage *source) {
    int probe = socket(remote->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return false;
    socklen_t len = sizeof(*source);
    bool ok = real_connect(probe, (const struct sockaddr *)remote, remote_len) == 0 &&
              real_getsockname(probe, (struct sockaddr *)source, &len) == 0;
    close(probe);
    return ok;
}

static void register_connection(int fd, const struct sockaddr_storage *remote, socklen_t remote_len,
                                 int transport) {
    char reason_buffer[768];
    struct text reason = TEXT(reason_buffer);
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    bool have_local = real_getsockname(fd, (struct sockaddr *)&local, &local_len) == 0 &&
                      (local.ss_family == AF_INET || local.ss_family == AF_INET6);

    if (have_local && storage_port(&local) == 0) {
        /* Not bound yet: take an ephemeral port now so the engine learns it before the
         * first packet. Wildcard address of the socket's own family. */
        struct sockaddr_storage any;
        memset(&any, 0, sizeof(any));
        socklen_t any_len;
        if (local.ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)&any)->sin6_family = AF_INET6;
            ((struct sockaddr_in6 *)&any)->sin6_addr = in6addr_any;
            any_len = sizeof(struct sockaddr_in6);
        } else {
            ((struct sockaddr_in *)&any)->sin_family = AF_INET;
            ((struct sockaddr_in *)&any)->sin_addr.s_addr = htonl(INADDR_ANY);
            any_len = sizeof(struct sockaddr_in);
        }
        if (real_bind(fd, (const struct sockaddr *)&any, any_len) != 0) {
            t_str(&reason, "cannot take an ephemeral local port first: ");
            t_str(&reason, error_text(errno));
            have_local = false;
        } else {
            local_len = sizeof(local);
            have_local = real_getsockname(fd, (struct sockaddr *)&local, &local_len) == 0 &&
                         storage_port(&local) != 0;
            if (!have_local) t_str(&reason, "the local port is not known before connecting");
        }
    } else if (!have_local) {
        t_str(&reason, "the local address is not known");
    }

    if (have_local && is_wildcard(&local)) {
        struct sockaddr_storage source;
        if (route_source(remote, remote_len, &source) && source.ss_family == local.ss_family) {
            uint16_t local_port = storage_port(&local);
            local = source;
            storage_set_port(&local, local_port);
        }
    }

    bool registered = false;
    if (have_local) {
        char request[768];
        struct text rq = TEXT(request);
        t_str(&rq, "{\"command\":\"connect\",\"aid\":");
        t_json_string(&rq, cfg.aid);
        t_str(&rq, ",\"transport\":\"");
        t_str(&rq, transport_name(transport));
        t_str(&rq, "\",\"localAddress\":\"");
        t_address(&rq, &local, false);
        t_str(&rq, "\",\"localPort\":");
        t_uint(&rq, storage_port(&local));
        t_str(&rq, ",\"remoteAddress\":\"");
        t_address(&rq, remote, false);
        t_str(&rq, "\",\"remotePort\":");
        t_uint(&rq, storage_port(remote));
        t_str(&rq, "}\n");

        char response[4096];
        size_t response_len;
        int sys_errno;
        enum exchange ex = engine_exchange(request, rq.len, response, sizeof(response), &response_len, &sys_errno);
        if (ex != EX_OK) {
            t_exchange_failure(&reason, ex, sys_errno);
        } else {
            const char *end = response + response_len;
            const char *error = j_lookup(response, end, "error");
            const char *p = j_ws(response, end);
            if (error && *error == '"') {
                char message[512];
                struct text m = TEXT(message);
                if (!j_string(error, end, &m) || m.len == 0) t_str(&m, "the engine refused");
                t_engine_error(&reason, message);
            } else if (p < end && *p == '{') {
                registered = true;
            } else {
                t_unexpected(&reason, response, response_len);
            }
        }
    }

    char buffer[1024];
    struct text t = TEXT(buffer);
    if (registered) {
        if (!cfg.debug) return;
        t_str(&t, "vpm: debug: connect fd ");
        t_int(&t, fd);
        t_str(&t, " registered ");
        t_address(&t, &local, true);
        t_str(&t, " -> ");
        t_address(&t, remote, true);
        t_char(&t, '/');
        t_str(&t, transport_name(transport));
        t_str(&t, " (AID ");
        t_printable(&t, cfg.aid, AID_MAX);
        t_char(&t, ')');
    } else {
        t_str(&t, "vpm: cannot register the connection to ");
        t_address(&t, remote, true);
        t_char(&t, '/');
        t_str(&t, transport_name(transport));
        t_str(&t, " for AID ");
        t_printable(&t, cfg.aid, AID_MAX);
        t_str(&t, " (connecting anyway): ");
        t_str(&t, reason.p);
    }
    emit(&t);
}

VPM_EXPORT int connect(int fd, VPM_CONST_ADDR_ARG arg, socklen_t len) {
    const struct sockaddr *addr = VPM_CONST_ADDR(arg);
    ensure_init();
    if (!real_connect) { errno = ENOSYS; return -1; }
    if (!cfg.active) return real_connect(fd, addr, len);

    int saved = errno;
    struct sockaddr_storage remote;
    if (copy_inet_address(fd, addr, len, false, &remote)) {
        uint16_t port = storage_port(&remote);
        int transport = port ? socket_transport(fd) : T_NONE;
        if (transport != T_NONE && port_listed(port, transport)) {
            bool fresh = true;
            if (transport == T_TCP) {
                /* A TCP socket already connecting or connected (a second connect() to poll
                 * a nonblocking one): the kernel answers; nothing to register. */
                struct tcp_info info;
                socklen_t info_len = sizeof(info);
                if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0 && info_len >= 1 &&
                    info.tcpi_state != TCP_CLOSE)
                    fresh = false;
            }
            if (fresh) register_connection(fd, &remote, len, transport);
        }
    }
    errno = saved;
    return real_connect(fd, addr, len);
}
