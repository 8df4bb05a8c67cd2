#define _GNU_SOURCE
#include "vpm_interception_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define VPM_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VPM_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "vpm exec's seccomp filter knows x86_64 and aarch64"
#endif

#define VPM_WAIT_KILLABLE_RECV (1UL << 5) /* SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV */

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

/* intercept_sends: also hand over sendto() calls that name a destination (an unconnected
 * UDP socket's; a connected socket's send() and sendto(..., NULL, 0) stay untouched) and
 * every sendmsg() (its destination is inside struct msghdr, which the filter cannot read). */
static int install_filter(int intercept_sends) {
    /* A number no system call has: the send tests below then never match. */
    const unsigned int sendto_number = intercept_sends ? (unsigned int)__NR_sendto : 0xFFFFFFFFu;
    const unsigned int sendmsg_number = intercept_sends ? (unsigned int)__NR_sendmsg : 0xFFFFFFFFu;
    const unsigned int destination = offsetof(struct seccomp_data, args) + 4 * sizeof(__u64);
    struct sock_filter program[] = {
        /* Another syscall ABI (i386 int 0x80, x32) would bypass the numbers below: refuse it. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VPM_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bind, 9, 0),            /* -> notify */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 8, 0),         /* -> notify */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getsockname, 7, 0),     /* -> notify */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 8, 0),  /* -> ENOSYS */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sendmsg_number, 5, 0),       /* -> notify */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sendto_number, 0, 5),        /* else -> allow */
        /* sendto's fifth argument, the destination, in two 32-bit halves (little-endian):
         * NULL -> allow, anything else -> notify. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, destination),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, destination + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* io_uring can bind and connect without these syscalls: programs fall back. */
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    };
    struct sock_fprog filter = { .len = sizeof(program) / sizeof(program[0]), .filter = program };
    /* WAIT_KILLABLE_RECV (Linux 5.19): once the supervisor has taken a call, only a fatal
     * signal interrupts it, so a bind the engine has already done is not restarted. */
    int listener = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER | VPM_WAIT_KILLABLE_RECV, &filter);
    if (listener < 0 && errno == EINVAL)
        listener = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &filter);
    return listener;
}

/* Child side: only async-signal-safe calls between fork and execve. */
static void child(int channel, pid_t parent, const char *path, char *const argv[], char *const envp[],
                  int intercept_sends) {
    const char *stage = "prepare";
    /* execve resets handlers and keeps ignored signals ignored (nohup); the mask it keeps,
     * so the program starts with none blocked. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    stage = "PR_SET_PDEATHSIG";
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
    if (getppid() != parent) _exit(127);  /* the supervisor died already */
    stage = "PR_SET_NO_NEW_PRIVS";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
    stage = "seccomp";
    int listener = install_filter(intercept_sends);
    if (listener < 0) goto fail;
    stage = "passing the listener";
    /* The filter may hand sendmsg() to the listener's reader, who is the parent waiting for
     * this very listener: no SCM_RIGHTS. The parent takes the descriptor with pidfd_getfd
     * (it must, before execve closes it) and says so with one byte. */
    char message[1 + sizeof(int)];
    message[0] = 'L';
    memcpy(message + 1, &listener, sizeof(int));
    if (write(channel, message, sizeof(message)) != (ssize_t)sizeof(message)) goto fail;
    char taken;
    if (read(channel, &taken, 1) != 1) goto fail;
    close(listener);
    stage = "execve";
    execve(path, argv, envp);
fail:;
    int code = errno;
    char report[1 + sizeof(int) + 64];
    size_t stage_length = strlen(stage);
    if (stage_length > 63) stage_length = 63;
    report[0] = 'E';
    memcpy(report + 1, &code, sizeof(int));
    memcpy(report + 1 + sizeof(int), stage, stage_length);
    ssize_t ignored = write(channel, report, 1 + sizeof(int) + stage_length);
    (void)ignored;
    _exit(127);
}

pid_t vpm_spawn_intercepted(const char *path, char *const argv[], char *const envp[],
                            int intercept_sends, int *listener, const char **stage) {
    static const char *const stages[] = { "prepare", "PR_SET_PDEATHSIG", "PR_SET_NO_NEW_PRIVS", "seccomp",
                                          "passing the listener", "execve" };
    int channel[2];
    *listener = -1;
    *stage = "socketpair";
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) return -1;
    pid_t parent = getpid();
    *stage = "fork";
    pid_t pid = fork();
    if (pid < 0) {
        int code = errno;
        close(channel[0]);
        close(channel[1]);
        errno = code;
        return -1;
    }
    if (pid == 0) {
        close(channel[0]);
        child(channel[1], parent, path, argv, envp, intercept_sends);
    }
    close(channel[1]);
    /* First message: the listener ('L'), or a failure report ('E'). Then, after a successful
     * execve, end of file (the channel is close-on-exec); else the execve failure. */
    int code = 0;
    const char *failed = NULL;
    for (int message = 0; message < 2 && failed == NULL; message++) {
        char report[1 + sizeof(int) + 64];
        int descriptor = -1;
        ssize_t length;
        do { length = vpm_receive_with_descriptor(channel[0], report, sizeof(report), &descriptor); } while (length < 0 && errno == EINTR);
        if (length == 0) break;  /* execve succeeded */
        if (length < 0) { code = errno; failed = "reading the child's report"; break; }
        if (report[0] == 'L' && descriptor < 0 && (size_t)length == 1 + sizeof(int)) {
            int number;
            memcpy(&number, report + 1, sizeof(int));
            int pidfd = vpm_pidfd_open(pid);
            *listener = pidfd >= 0 ? vpm_pidfd_getfd(pidfd, number) : -1;
            if (pidfd >= 0) close(pidfd);
            if (*listener < 0) { code = errno; failed = "passing the listener"; break; }
            char taken = 'T';
            if (write(channel[0], &taken, 1) != 1) { code = errno; failed = "passing the listener"; break; }
            continue;
        }
        if (descriptor >= 0) close(descriptor);
        if (report[0] == 'E' && (size_t)length >= 1 + sizeof(int)) {
            memcpy(&code, report + 1, sizeof(int));
            size_t stage_length = (size_t)length - 1 - sizeof(int);
            failed = "the child";
            for (size_t index = 0; index < sizeof(stages) / sizeof(stages[0]); index++) {
                if (strlen(stages[index]) == stage_length && memcmp(stages[index], report + 1 + sizeof(int), stage_length) == 0)
                    failed = stages[index];
            }
        } else {
            code = EPROTO;
            failed = "reading the child's report";
        }
    }
    close(channel[0]);
    if (failed == NULL && *listener < 0) { code = EPROTO; failed = "passing the listener"; }
    if (failed != NULL) {
        if (*listener >= 0) close(*listener);
        *listener = -1;
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *stage = failed;
        errno = code;
        return -1;
    }
    *stage = NULL;
    return pid;
}

int vpm_notification_receive(int listener, struct seccomp_notif *notification) {
    memset(notification, 0, sizeof(*notification));
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, notification);
}

int vpm_notification_respond(int listener, uint64_t id, int64_t value, int32_t error, int continue_call) {
    struct seccomp_notif_resp response;
    memset(&response, 0, sizeof(response));
    response.id = id;
    response.val = value;
    response.error = error;
    response.flags = continue_call ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &response);
}

int vpm_notification_valid(int listener, uint64_t id) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

int vpm_notification_synchronous(int listener) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

int vpm_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int vpm_pidfd_getfd(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }

ssize_t vpm_read_memory(pid_t pid, uint64_t address, void *buffer, size_t length) {
    struct iovec local = { buffer, length };
    struct iovec remote = { (void *)(uintptr_t)address, length };
    return process_vm_readv(pid, &local, 1, &remote, 1, 0);
}

ssize_t vpm_write_memory(pid_t pid, uint64_t address, const void *buffer, size_t length) {
    struct iovec local = { (void *)buffer, length };
    struct iovec remote = { (void *)(uintptr_t)address, length };
    return process_vm_writev(pid, &local, 1, &remote, 1, 0);
}

ssize_t vpm_send_with_descriptor(int socket, const void *data, size_t length, int descriptor) {
    struct iovec vector = { (void *)data, length };
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1 };
    if (descriptor >= 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = sizeof(control.buffer);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
    }
    ssize_t sent;
    do { sent = sendmsg(socket, &message, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    return sent;
}

ssize_t vpm_receive_with_descriptor(int socket, void *data, size_t length, int *descriptor) {
    struct iovec vector = { data, length };
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1,
                              .msg_control = control.buffer, .msg_controllen = sizeof(control.buffer) };
    *descriptor = -1;
    ssize_t received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    if (received < 0) return received;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS && header->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int extra = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int descriptors[extra];
            memcpy(descriptors, CMSG_DATA(header), sizeof(int) * (size_t)extra);
            for (int index = 0; index < extra; index++) {
                if (*descriptor < 0) *descriptor = descriptors[index];
                else close(descriptors[index]);  /* only one is expected */
            }
        }
    }
    return received;
}

int vpm_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

static volatile pid_t forward_to;

/* Sent by another process (kill, systemd): pass it on. Generated by the terminal
 * (SI_KERNEL): the program, in the same foreground process group, has it already. */
static void forward(int signal_number, siginfo_t *info, void *context) {
    (void)context;
    pid_t pid = forward_to;
    if (pid > 0 && info->si_code != SI_KERNEL) kill(pid, signal_number);
}

int vpm_forward_signals(pid_t pid, const int *signals, int count) {
    forward_to = pid;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = pid > 0 ? forward : NULL;
    action.sa_flags = pid > 0 ? SA_SIGINFO | SA_RESTART : 0;
    if (pid <= 0) action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    for (int index = 0; index < count; index++) {
        if (sigaction(signals[index], &action, NULL) != 0) return -1;
    }
    return 0;
}

int vpm_interception_available(void) {
    int self = vpm_pidfd_open(getpid());
    if (self < 0) return -1;
    int copy = vpm_pidfd_getfd(self, self);
    int code = errno;
    close(self);
    if (copy < 0) { errno = code; return -1; }
    close(copy);
    return 0;
}
