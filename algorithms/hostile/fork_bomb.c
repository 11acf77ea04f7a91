/* Forks until the kernel refuses, children parked in pause(). Prints how many children it got
 * and exits 1 (the pids limit held); the container's end kills the children. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    long children = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) { for (;;) pause(); }
        if (p < 0) {
            printf("fork refused after %ld children: %s\n", children, strerror(errno));
            fflush(stdout);
            return 1;
        }
        children++;
        if (children > 100000) { printf("FORKED %ld children\n", children); return 0; }
    }
}
