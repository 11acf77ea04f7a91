/* An algorithm that fails loudly: prints the data source /mnt/data/records (a secret of the
 * data owner) to standard output and standard error, then exits 1. Its run's reason at the
 * server must not carry any of it; the node keeps it in the run's log. */
#include <stdio.h>

int main(void) {
    static char buf[4096];
    FILE *f = fopen("/mnt/data/records", "rb");
    if (!f) { perror("records"); return 2; }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    printf("about to fail; the data is: %s\n", buf);
    fprintf(stderr, "error: cannot go on with %s\n", buf);
    return 1;
}
