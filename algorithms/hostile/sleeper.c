/* Sleeps far past any timeout, ignoring SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    signal(SIGTERM, SIG_IGN);
    printf("sleeping\n");
    fflush(stdout);
    for (;;) sleep(3600);
}
