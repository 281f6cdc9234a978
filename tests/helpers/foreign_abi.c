/* Makes one syscall through a foreign ABI of x86_64: "i386" (int 0x80, getpid) or "x32"
 * (getpid with __X32_SYSCALL_BIT). Under the supervisor's filter the process must die of
 * SIGSYS; unfiltered, it prints "survived" and exits 0 (or reports ENOSYS for x32 on
 * kernels built without it). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    long ret;
    if (argc != 2) {
        fprintf(stderr, "usage: foreign_abi i386|x32\n");
        return 2;
    }
    if (strcmp(argv[1], "i386") == 0) {
        /* i386 __NR_getpid is 20. */
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    } else if (strcmp(argv[1], "x32") == 0) {
        /* x86_64/x32 __NR_getpid is 39; x32 calls carry bit 30. */
        __asm__ volatile("syscall" : "=a"(ret) : "a"(0x40000000L | 39L) : "rcx", "r11", "memory");
    } else {
        fprintf(stderr, "unknown ABI %s\n", argv[1]);
        return 2;
    }
    printf("survived ret=%ld\n", ret);
    return 0;
}
