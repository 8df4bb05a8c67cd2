#define _GNU_SOURCE
#include "vpm_interception_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Descriptors one sd_notify message may carry through the relay. */
#define VPM_RELAY_DESCRIPTORS 64

/* One datagram read from the relay, with its descriptors and its sender's pid. */
struct notification {
    char data[16384];
    union {
        char buffer[CMSG_SPACE(sizeof(int) * VPM_RELAY_DESCRIPTORS) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } control;
    ssize_t length;
    int truncated;
    int *descriptors;
    size_t count;
    pid_t sender;
};

/* Reads one datagram (flags: MSG_DONTWAIT or 0); -1 with errno when none was read. The
 * descriptors it carried are open until `release`. */
static int receive(int relay, struct notification *notification, int flags) {
    struct iovec vector = { .iov_base = notification->data, .iov_len = sizeof(notification->data) };
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = notification->control.buffer,
                              .msg_controllen = sizeof(notification->control.buffer) };
    notification->length = recvmsg(relay, &message, flags | MSG_CMSG_CLOEXEC);
    notification->descriptors = NULL;
    notification->count = 0;
    notification->sender = 0;
    if (notification->length < 0) return -1;
    notification->truncated = (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET) continue;
        if (header->cmsg_type == SCM_RIGHTS) {
            notification->descriptors = (int *)CMSG_DATA(header);
            notification->count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        } else if (header->cmsg_type == SCM_CREDENTIALS) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(header), sizeof(credentials));
            notification->sender = credentials.pid;
        }
    }
    return 0;
}

static void release(struct notification *notification) {
    for (size_t index = 0; index < notification->count; index++) close(notification->descriptors[index]);
}

/* vpm exec runs as two processes. The front is the process its caller started: it waits for
 * the program's first process only, and exits with its status. The supervisor, the front's
 * child, is the program's parent and subreaper: it answers the intercepted calls of the
 * program and of everything the program leaves running (a daemon), and exits when the last
 * of them has. So `redis-server --daemonize yes`, `pg_ctl start` and a systemd Type=forking
 * unit return as they do without vpm, and their daemons stay instances. */

pid_t vpm_split_front(int *channel) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return -1;
    pid_t front = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int code = errno;
        close(ends[0]);
        close(ends[1]);
        errno = code;
        return -1;
    }
    if (pid == 0) {
        close(ends[0]);
        /* Until the program's first process has exited, the supervisor lives and dies with the
         * front: a front killed outright (SIGKILL) takes the supervisor and so the program. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != front) _exit(127);
        *channel = ends[1];
        return 0;
    }
    close(ends[1]);
    *channel = ends[0];
    return pid;
}

int vpm_supervisor_report(int channel, int status) {
    /* First unbind our life from the front's: it exits as soon as it has read this. */
    int failed = prctl(PR_SET_PDEATHSIG, 0);
    ssize_t written;
    do { written = write(channel, &status, sizeof(status)); } while (written < 0 && errno == EINTR);
    close(channel);
    return failed != 0 || written != (ssize_t)sizeof(status) ? -1 : 0;
}

int vpm_supervisor_detach(const int *signals, int count) {
    /* The caller's terminal and its job control are not ours any more: a hang-up or a Ctrl-C
     * meant for the caller's shell must not end the daemons' supervisor. It ends when they do. */
    (void)setsid();
    struct sigaction ignore;
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    for (int index = 0; index < count; index++) (void)sigaction(signals[index], &ignore, NULL);
    /* Nor does it hold the caller's pipes open: `out=$(vpm exec -- daemon)` sees end of file
     * once the daemon has closed its own copies, as it would without vpm. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return -1;
    for (int descriptor = 0; descriptor <= 2; descriptor++) (void)dup3(null, descriptor, 0);
    if (null > 2) close(null);
    return 0;
}

/* sd_notify relay. Under a systemd Type=notify unit the front is the unit's main process,
 * and systemd takes READY=1 from the main process only (NotifyAccess=main). The program
 * sends to the front's socket instead, and the front passes each message on as its own,
 * with any descriptors (FDSTORE=1) it carries. */

static socklen_t notify_address(const char *path, struct sockaddr_un *address) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(address->sun_path)) return 0;
    memcpy(address->sun_path, path, length);
    if (path[0] == '@') address->sun_path[0] = '\0';  /* an abstract socket */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + (path[0] == '@' ? 0 : 1));
}

int vpm_notify_target_valid(const char *path) {
    struct sockaddr_un address;
    return (path[0] == '/' || path[0] == '@') && notify_address(path, &address) > 0;
}

void vpm_notify_relay_discard(int relay) {
    /* After the front has gone: the name stays bound (nobody else can take it and read the
     * daemon's messages), and what arrives is read and dropped, descriptors closed, so the
     * sender never blocks on a full queue. */
    static struct notification dropped;  /* one thread reads it: not on that thread's stack */
    while (1) {
        if (receive(relay, &dropped, 0) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        release(&dropped);
    }
}

int vpm_notify_relay_open(char *name, size_t capacity) {
    int relay = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (relay < 0) return -1;
    int on = 1;
    if (setsockopt(relay, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) goto fail;
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned int tag = 0;
        int random = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (random >= 0) { if (read(random, &tag, sizeof(tag)) < 0) tag = 0; close(random); }
        snprintf(name, capacity, "@vpm-exec/%d/%08x", (int)getpid(), tag);
        struct sockaddr_un address;
        socklen_t length = notify_address(name, &address);
        if (length == 0) { errno = ENAMETOOLONG; goto fail; }
        if (bind(relay, (struct sockaddr *)&address, length) == 0) return relay;
        if (errno != EADDRINUSE) goto fail;
    }
fail:;
    int code = errno;
    close(relay);
    errno = code;
    return -1;
}

/* Whether `pid` is in this process's cgroups (every line of /proc/PID/cgroup equal). */
static int same_cgroup(pid_t pid) {
    char path[64], mine[4096], theirs[4096];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    int files[2] = { open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC), open(path, O_RDONLY | O_CLOEXEC) };
    ssize_t lengths[2] = { -1, -1 };
    char *buffers[2] = { mine, theirs };
    for (int index = 0; index < 2; index++) {
        if (files[index] < 0) continue;
        lengths[index] = read(files[index], buffers[index], sizeof(mine));
        close(files[index]);
    }
    return lengths[0] > 0 && lengths[0] < (ssize_t)sizeof(mine) && lengths[0] == lengths[1] && memcmp(mine, theirs, (size_t)lengths[0]) == 0;
}

static void relay_one(int relay, int target, const struct sockaddr_un *address, socklen_t address_length) {
    static struct notification received;  /* the front's one thread */
    if (receive(relay, &received, MSG_DONTWAIT) < 0) return;
    /* The socket's name is not secret (/proc/net/unix): only a process of this process's
     * cgroup (under systemd: the unit's) speaks for the unit, as NotifyAccess=all would allow
     * without vpm. Not another program of the same user, which may be another AID's instance. */
    if (!received.truncated && received.sender > 0 && same_cgroup(received.sender)) {
        union {
            char buffer[CMSG_SPACE(sizeof(int) * VPM_RELAY_DESCRIPTORS)];
            struct cmsghdr align;
        } out;
        struct iovec payload = { .iov_base = received.data, .iov_len = (size_t)received.length };
        struct msghdr forward = { .msg_name = (void *)address, .msg_namelen = address_length,
                                  .msg_iov = &payload, .msg_iovlen = 1 };
        if (received.count > 0) {
            memset(&out, 0, sizeof(out));
            forward.msg_control = out.buffer;
            forward.msg_controllen = CMSG_SPACE(sizeof(int) * received.count);
            struct cmsghdr *header = CMSG_FIRSTHDR(&forward);
            header->cmsg_level = SOL_SOCKET;
            header->cmsg_type = SCM_RIGHTS;
            header->cmsg_len = CMSG_LEN(sizeof(int) * received.count);
            memcpy(CMSG_DATA(header), received.descriptors, sizeof(int) * received.count);
        }
        while (sendmsg(target, &forward, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
    }
    release(&received);
}

int vpm_front_wait(pid_t supervisor, int channel, int relay, const char *notify_socket,
                   const int *signals, int count) {
    (void)vpm_forward_signals(supervisor, signals, count);
    int target = -1;
    struct sockaddr_un address;
    socklen_t address_length = 0;
    if (relay >= 0 && notify_socket != NULL && (address_length = notify_address(notify_socket, &address)) > 0)
        target = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int status = -1;
    int received = 0;
    size_t have = 0;
    while (1) {
        struct pollfd descriptors[2] = { { .fd = channel, .events = POLLIN }, { .fd = target >= 0 ? relay : -1, .events = POLLIN } };
        if (poll(descriptors, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (descriptors[1].revents & POLLIN) relay_one(relay, target, &address, address_length);
        if (descriptors[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t length = read(channel, (char *)&status + have, sizeof(status) - have);
            if (length < 0 && errno == EINTR) continue;
            if (length > 0) { have += (size_t)length; if (have < sizeof(status)) continue; received = 1; }
            break;
        }
    }
    /* Messages the program sent just before it exited go out before we do. */
    if (target >= 0) {
        struct pollfd pending = { .fd = relay, .events = POLLIN };
        while (poll(&pending, 1, 0) > 0 && (pending.revents & POLLIN)) relay_one(relay, target, &address, address_length);
        close(target);
    }
    if (received) return status;
    /* The supervisor ended without a report: it was killed. Its end is our answer. */
    int raw = 0;
    while (waitpid(supervisor, &raw, 0) < 0) {
        if (errno != EINTR) return 1;
    }
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}
