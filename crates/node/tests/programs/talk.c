/* An algorithm that talks: prints a line with a marker on standard output and a line with a
 * terminal escape sequence on standard error; with "big" in its input about 4 KiB more. With
 * "fail" in its input it then exits 1; otherwise it writes "talked" as its result. Its logs
 * reach the researcher only when the node's policy releases them, sealed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char buf[1 << 16];
    size_t n = 0;
    FILE *in = fopen("/mnt/input/input", "rb");
    if (in) {
        n = fread(buf, 1, sizeof buf - 1, in);
        fclose(in);
    }
    buf[n] = 0;
    printf("talk line one: ROW-7f3a-CONFIDENTIAL\n");
    fflush(stdout);
    fprintf(stderr, "talk line two: \x1b[31mred\x1b[0m on stderr\n");
    if (strstr(buf, "\"big\""))
        for (int i = 0; i < 64; i++)
            printf("padding line %02d: ................................................................\n", i);
    fflush(stdout);
    if (strstr(buf, "\"fail\"")) return 1;
    const char *out_path = getenv("WARDEN_OUTPUT");
    FILE *out = fopen(out_path ? out_path : "/mnt/output/output", "wb");
    if (!out) return 3;
    fputs("talked", out);
    fclose(out);
    return 0;
}
