/* A slow algorithm for the node's reliability tests: sleeps for the number of seconds after
 * "sleep": in its input, then writes "slept N:" and its input to the output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    static char buf[1 << 16];
    FILE *in = fopen("/mnt/input/input", "rb");
    if (!in) { perror("input"); return 2; }
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    buf[n] = 0;
    fclose(in);
    const char *s = strstr(buf, "\"sleep\":");
    int secs = s ? atoi(s + 8) : 0;
    printf("sleeping %d s\n", secs);
    fflush(stdout);
    sleep(secs);
    FILE *out = fopen(getenv("WARDEN_OUTPUT") ? getenv("WARDEN_OUTPUT") : "/mnt/output/output", "wb");
    if (!out) { perror("output"); return 3; }
    fprintf(out, "slept %d:", secs);
    fwrite(buf, 1, n, out);
    fclose(out);
    return 0;
}
