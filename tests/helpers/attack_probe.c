/* Probes for tests/attack_sandbox.rs: one syscall each, as an attacker inside the
 * sandbox would make it (or, for set-up, as the test outside makes it).
 * Exit 0: the call succeeded; 1: it failed (errno printed on stderr); 2: usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/klog.h>
#include <sys/ioctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define KEY_SPEC_USER_KEYRING -4
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11
#define KEYCTL_INVALIDATE 21

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "shm-create") && argc == 3) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) return fail("shmget");
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1) return fail("shmat");
        strcpy(p, argv[2]);
        printf("%d\n", id);
        return 0;
    }
    if (!strcmp(cmd, "shm-read") && argc == 3) {
        char *p = shmat(atoi(argv[2]), NULL, SHM_RDONLY);
        if (p == (void *)-1) return fail("shmat");
        printf("%s\n", p);
        return 0;
    }
    if (!strcmp(cmd, "shm-write") && argc == 4) {
        char *p = shmat(atoi(argv[2]), NULL, 0);
        if (p == (void *)-1) return fail("shmat");
        strcpy(p, argv[3]);
        return 0;
    }
    if (!strcmp(cmd, "shm-rm") && argc == 3) {
        if (shmctl(atoi(argv[2]), IPC_RMID, NULL) < 0) return fail("shmctl");
        return 0;
    }
    if (!strcmp(cmd, "key-add") && argc == 4) {
        long id = syscall(SYS_add_key, "user", argv[2], argv[3], strlen(argv[3]),
                          KEY_SPEC_USER_KEYRING);
        if (id < 0) return fail("add_key");
        printf("%ld\n", id);
        return 0;
    }
    if (!strcmp(cmd, "key-read") && argc == 4) {
        /* By description in root's user keyring, then by the serial given. */
        long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", argv[2], 0);
        if (id < 0) id = atol(argv[3]);
        char buf[256] = {0};
        long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
        if (n < 0) return fail("keyctl read");
        printf("%s\n", buf);
        return 0;
    }
    if (!strcmp(cmd, "key-rm") && argc == 3) {
        if (syscall(SYS_keyctl, KEYCTL_INVALIDATE, atol(argv[2])) < 0) return fail("keyctl invalidate");
        return 0;
    }
    if (!strcmp(cmd, "sethostname") && argc == 3) {
        if (sethostname(argv[2], strlen(argv[2])) < 0) return fail("sethostname");
        return 0;
    }
    if (!strcmp(cmd, "fanotify")) {
        int fd = fanotify_init(FAN_CLASS_CONTENT, O_RDONLY);
        if (fd < 0) return fail("fanotify_init");
        return 0;
    }
    if (!strcmp(cmd, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
        if (fd < 0) return fail("bpf");
        return 0;
    }
    if (!strcmp(cmd, "perf")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_CPU_CLOCK;
        /* Every process on cpu 0: what only privilege allows. */
        long fd = syscall(SYS_perf_event_open, &attr, -1, 0, -1, 0);
        if (fd < 0) return fail("perf_event_open");
        return 0;
    }
    if (!strcmp(cmd, "syslog")) {
        /* Read the kernel log (what dmesg does; kernel.dmesg_restrict leaves it to privilege). */
        char buf[4096];
        if (klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf) < 0) return fail("syslog");
        return 0;
    }
    if (!strcmp(cmd, "tiocsti") && argc == 3) {
        /* Pushes argv[2] (with \n for newlines) into the input of the controlling terminal. */
        int fd = open("/dev/tty", O_RDWR);
        if (fd < 0) return fail("open /dev/tty");
        int failed = 0;
        for (const char *c = argv[2]; *c; c++) {
            char ch = *c;
            if (c[0] == '\\' && c[1] == 'n') { ch = '\n'; c++; }
            if (ioctl(fd, TIOCSTI, &ch) < 0) { failed = 1; break; }
        }
        if (failed) return fail("ioctl TIOCSTI");
        return 0;
    }
    if (!strcmp(cmd, "unix-connect") && argc == 3) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0) return fail("socket");
        struct sockaddr_un a;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        socklen_t len = sizeof a;
        if (argv[2][0] == '@') {
            /* An abstract name: a NUL, then the name without the @. */
            size_t n = strlen(argv[2]);
            if (n > sizeof a.sun_path - 1) return 2;
            memcpy(a.sun_path + 1, argv[2] + 1, n - 1);
            len = offsetof(struct sockaddr_un, sun_path) + n;
        } else {
            strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
        }
        if (connect(s, (struct sockaddr *)&a, len) < 0) return fail("connect");
        if (write(s, "pwned\n", 6) != 6) return fail("write");
        return 0;
    }
    return 2;
}
