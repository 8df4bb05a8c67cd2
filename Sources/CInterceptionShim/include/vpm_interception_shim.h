// What Swift cannot import for `vpm exec`'s supervisor: the BPF filter (macros), the fork
// that installs it before execve (no Swift may run between fork and exec), the seccomp
// ioctls (macros), and raw syscalls that glibc does not wrap or wraps variadically.
#ifndef VPM_INTERCEPTION_SHIM_H
#define VPM_INTERCEPTION_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

/// The intercepted system calls' numbers on this architecture.
static const int vpm_syscall_bind = __NR_bind;
static const int vpm_syscall_connect = __NR_connect;
static const int vpm_syscall_getsockname = __NR_getsockname;
static const int vpm_syscall_sendto = __NR_sendto;
static const int vpm_syscall_sendmsg = __NR_sendmsg;

/// Starts `path` as a child that intercepts bind, connect and getsockname through a seccomp
/// listener and gets ENOSYS for io_uring_setup (and for other syscall ABIs). The child dies
/// with its parent (PR_SET_PDEATHSIG). Returns the child's pid and stores the listener in
/// `listener`; on failure returns -1 with errno set and `stage` naming the step that failed.
/// With `intercept_sends`, sendto() calls that name a destination, and sendmsg() calls, are
/// intercepted too.
pid_t vpm_spawn_intercepted(const char *path, char *const argv[], char *const envp[],
                            int intercept_sends, int *listener, const char **stage);

/// SECCOMP_IOCTL_NOTIF_RECV into a zeroed `notification`: 0, or -1 with errno.
int vpm_notification_receive(int listener, struct seccomp_notif *notification);
/// SECCOMP_IOCTL_NOTIF_SEND: `error` 0 answers `value`; `continue_call` lets the kernel run
/// the call itself. 0, or -1 with errno (ENOENT: the caller is gone).
int vpm_notification_respond(int listener, uint64_t id, int64_t value, int32_t error, int continue_call);
/// SECCOMP_IOCTL_NOTIF_ID_VALID: 1 while the notifying thread still waits for its answer.
int vpm_notification_valid(int listener, uint64_t id);
/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): the kernel switches straight to the
/// waiting supervisor and back instead of waking it on another CPU. 0, or -1 with errno
/// (EINVAL on older kernels, where the plain wake-up still works).
int vpm_notification_synchronous(int listener);

int vpm_pidfd_open(pid_t pid);
int vpm_pidfd_getfd(int pidfd, int fd);
/// process_vm_readv / process_vm_writev of one range: bytes moved, or -1 with errno.
ssize_t vpm_read_memory(pid_t pid, uint64_t address, void *buffer, size_t length);
ssize_t vpm_write_memory(pid_t pid, uint64_t address, const void *buffer, size_t length);

/// Sends `data` with `descriptor` attached (SCM_RIGHTS); bytes sent or -1 with errno.
ssize_t vpm_send_with_descriptor(int socket, const void *data, size_t length, int descriptor);
/// Receives into `data`; a descriptor that came with it lands in `descriptor` (else -1).
ssize_t vpm_receive_with_descriptor(int socket, void *data, size_t length, int *descriptor);

/// PR_SET_CHILD_SUBREAPER: orphans of the program (daemons) stay this process's children.
int vpm_become_subreaper(void);

/// Forwards `signals` to `pid` (0: back to their default action). Signals the terminal
/// generated are not forwarded: the program, in the same process group, got them too.
int vpm_forward_signals(pid_t pid, const int *signals, int count);

/// Splits `vpm exec` into the front (the caller's process; gets the supervisor's pid) and
/// the supervisor (its child; gets 0). `channel` is each side's end of the report pipe. The
/// supervisor dies with the front until it has reported. -1 with errno on failure.
pid_t vpm_split_front(int *channel);

/// Supervisor: reports the program's exit status to the front, after which the front exits.
int vpm_supervisor_report(int channel, int status);

/// Supervisor, once it serves only what the program left running: leaves the caller's
/// session, ignores `signals`, and lets go of the caller's terminal and pipes.
int vpm_supervisor_detach(const int *signals, int count);

/// Whether NOTIFY_SOCKET's value is an address the relay can send to (a path or `@name`).
int vpm_notify_target_valid(const char *path);

/// Supervisor, once the front has gone: reads and drops what arrives on the relay, so its
/// name stays taken and a sender never blocks. Returns only on error.
void vpm_notify_relay_discard(int relay);

/// Front: an abstract datagram socket for the program's sd_notify messages; its name
/// (`@…`) goes into `name`. -1 with errno on failure.
int vpm_notify_relay_open(char *name, size_t capacity);

/// Front: forwards `signals` to the supervisor and relays sd_notify messages from `relay`
/// (or none, -1) to `notify_socket` until the supervisor reports; returns the program's
/// status, or the supervisor's own (128 + signal) if it ended without reporting.
int vpm_front_wait(pid_t supervisor, int channel, int relay, const char *notify_socket,
                   const int *signals, int count);

/// Whether this kernel lets a supervisor take a program's descriptors (pidfd_getfd,
/// Linux 5.6): 0, or -1 with errno (ENOSYS on older kernels).
int vpm_interception_available(void);

#endif
