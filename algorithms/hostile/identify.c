/* Copies /id.txt (baked into the image) to the output file and to stdout. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *out = getenv("WARDEN_OUTPUT");
    FILE *in = fopen("/id.txt", "r");
    if (!in || !out) { fprintf(stderr, "missing /id.txt or WARDEN_OUTPUT\n"); return 2; }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    FILE *o = fopen(out, "w");
    if (!o) { perror("open output"); return 3; }
    fwrite(buf, 1, n, o);
    fclose(o);
    fwrite(buf, 1, n, stdout);
    return 0;
}
