/* Allocates and touches memory in 1 MiB steps without end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t total = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p) { printf("malloc refused at %zu MiB\n", total >> 20); fflush(stdout); return 1; }
        memset(p, 0xA5, 1 << 20);
        total += 1 << 20;
        if ((total >> 20) % 16 == 0) { printf("holding %zu MiB\n", total >> 20); fflush(stdout); }
    }
}
