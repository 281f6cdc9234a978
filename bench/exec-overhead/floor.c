/*
 * The floor: what stopping every execve with seccomp user notification costs on this
 * machine, with no policy, no sandbox, no cgroup and no Rust. A child installs a filter
 * that notifies on execve and execs COMMAND; the parent takes the listener with
 * pidfd_getfd, asks for synchronous wake-ups (Linux 6.6; ignored before) and answers
 * every notification CONTINUE from a blocking RECV. Exits with COMMAND's exit status.
 *
 * usage: floor COMMAND [ARGS...]      (bench/exec-overhead/run compiles and runs it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

static void die(const char *what) {
    perror(what);
    exit(125);
}

/* Ends the whole process (and so the RECV loop) with the command's status. */
static void *wait_for(void *arg) {
    int status;
    if (waitpid((pid_t)(long)arg, &status, 0) < 0)
        die("waitpid");
    exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: floor COMMAND [ARGS...]\n");
        return 2;
    }
    int report[2], go_ahead[2]; /* child -> parent: the listener's number; back: go */
    if (pipe2(report, O_CLOEXEC) < 0 || pipe2(go_ahead, O_CLOEXEC) < 0)
        die("pipe");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        struct sock_filter insns[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof insns / sizeof insns[0], insns};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            die("no_new_privs");
        int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (fd < 0)
            die("seccomp");
        if (write(report[1], &fd, sizeof fd) != sizeof fd)
            die("write");
        char go;
        /* Wait until the parent holds the listener: an exec before that would hang. */
        if (read(go_ahead[0], &go, 1) != 1)
            die("read");
        execvp(argv[1], argv + 1);
        die("execvp");
    }
    int fd;
    if (read(report[0], &fd, sizeof fd) != sizeof fd)
        die("read");
    int pidfd = syscall(SYS_pidfd_open, child, 0);
    int listener = pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (listener < 0)
        die("pidfd_getfd");
    (void)ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, 1UL);
    if (write(go_ahead[1], "g", 1) != 1)
        die("write");
    pthread_t waiter;
    if (pthread_create(&waiter, NULL, wait_for, (void *)(long)child) != 0)
        die("pthread_create");
    for (;;) {
        struct seccomp_notif req;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            die("NOTIF_RECV");
        }
        struct seccomp_notif_resp resp = {req.id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE};
        (void)ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}
