/* Writes $WARDEN_BIG_BYTES bytes (default 64 MiB) to the output file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *out = getenv("WARDEN_OUTPUT");
    const char *n = getenv("WARDEN_BIG_BYTES");
    long long want = n ? atoll(n) : 64LL << 20;
    FILE *o = out ? fopen(out, "w") : NULL;
    if (!o) { perror("open output"); return 2; }
    static char block[65536];
    memset(block, 'x', sizeof block);
    long long written = 0;
    while (written < want) {
        size_t chunk = want - written < (long long)sizeof block ? (size_t)(want - written) : sizeof block;
        if (fwrite(block, 1, chunk, o) != chunk) { perror("write"); break; }
        written += chunk;
    }
    fclose(o);
    printf("wrote %lld bytes\n", written);
    return 0;
}
