/* execve with pointers the supervisor cannot read: each call must fail with EFAULT (as
 * the kernel itself would answer), never crash or stall the supervisor. Prints one line
 * per case, "<case> errno=<n>", then execs argv[1..] so the caller sees the supervisor
 * still serving. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static void attempt(const char *name, const char *path, char *const *argv, char *const *envp) {
    errno = 0;
    long ret = syscall(SYS_execve, path, argv, envp);
    printf("%s ret=%ld errno=%d\n", name, ret, errno);
    fflush(stdout);
}

int main(int argc, char **argv) {
    char *good_argv[] = {"true", NULL};
    char *bad_in_argv[] = {"true", (char *)1, NULL};
    attempt("path", (const char *)1, good_argv, environ);
    attempt("argv", "/bin/true", (char *const *)1, environ);
    attempt("argv-element", "/bin/true", bad_in_argv, environ);
    attempt("envp", "/bin/true", good_argv, (char *const *)1);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        printf("exec %s failed errno=%d\n", argv[1], errno);
        return 1;
    }
    return 0;
}
