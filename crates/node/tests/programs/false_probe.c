/* A probe on an engine where isolation does not hold: reports a failed check, exits 1. */
#include <stdio.h>

int main(void) {
    printf("ok uid: 65534\n");
    printf("FAIL network: an interface other than lo is up (eth0)\n");
    return 1;
}
