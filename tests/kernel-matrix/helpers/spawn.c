/*
 * spawn: a non-shell program that starts another one the way python's subprocess does
 * (fork, then execve in the child, then wait), for the kernel-matrix guest, which has no
 * static python. Exits with the child's status (128+N for death by signal N), 127 when
 * execve failed (the errno goes to stderr).
 *
 * usage: spawn PATH [ARGV0 ARGS...]   (ARGV0 defaults to PATH)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: spawn PATH [ARGV0 ARGS...]\n");
        return 2;
    }
    char *const *child_argv = argc > 2 ? &argv[2] : &argv[1];
    pid_t pid = fork();
    if (pid < 0) {
        perror("spawn: fork");
        return 1;
    }
    if (pid == 0) {
        execve(argv[1], child_argv, environ);
        fprintf(stderr, "spawn: execve %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("spawn: waitpid");
            return 1;
        }
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
