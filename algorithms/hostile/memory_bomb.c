/* Allocates and touches memory in 1 MiB steps without end.
 *
 * It waits half a second first: containerd's shim starts watching a container's cgroup for OOM
 * events only after the process has started, so a process killed out of memory within its
 * first milliseconds can be reported by Docker with OOMKilled false (exit 137), as happened on
 * a loaded machine. The node then says "exited with code 137", which is still a failure; the
 * test is of the node's reason for a bomb the engine saw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(void) {
    struct timespec pause = {0, 500 * 1000 * 1000};
    nanosleep(&pause, NULL);
    size_t total = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p) { printf("malloc refused at %zu MiB\n", total >> 20); fflush(stdout); return 1; }
        memset(p, 0xA5, 1 << 20);
        total += 1 << 20;
        if ((total >> 20) % 16 == 0) { printf("holding %zu MiB\n", total >> 20); fflush(stdout); }
    }
}
