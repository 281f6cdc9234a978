/* An LD_PRELOAD library for tests/attack_escalation.rs: when loaded into a program, it
 * writes the file $ATTACK_CANARY (if it can: outside the sandbox it can). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void attack(void) {
    const char *path = getenv("ATTACK_CANARY");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    (void)!write(fd, "escaped\n", 8);
    close(fd);
}
