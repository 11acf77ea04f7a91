/* Spins on every thread it can for $WARDEN_BURN_SECONDS (default 2) of wall-clock time, then
 * reports the CPU time it got. Without a CPU limit that is about threads x seconds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds;

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *spin(void *arg) {
    (void)arg;
    double end = now(CLOCK_MONOTONIC) + seconds;
    volatile unsigned long x = 0;
    while (now(CLOCK_MONOTONIC) < end) x++;
    return NULL;
}

int main(void) {
    const char *s = getenv("WARDEN_BURN_SECONDS");
    seconds = s ? atof(s) : 2.0;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, spin, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("cpu=%.3f wall=%.3f\n", now(CLOCK_PROCESS_CPUTIME_ID), seconds);
    fflush(stdout);
    return 1;
}
