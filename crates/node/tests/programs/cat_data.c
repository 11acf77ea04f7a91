/* Reads the data source named in its input's "args" string (a file under /mnt/data) and writes
 * it to the output; also tries to write to it (must fail: data is read-only). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char buf[1 << 16];
    FILE *in = fopen("/mnt/input/input", "rb");
    if (!in) { perror("input"); return 2; }
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    buf[n] = 0;
    fclose(in);
    char *a = strstr(buf, "\"args\":\"");
    if (!a) return 3;
    a += 8;
    char *e = strchr(a, '"');
    if (!e) return 3;
    *e = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", getenv("WARDEN_DATA_DIR") ? getenv("WARDEN_DATA_DIR") : "?", a);
    FILE *w = fopen(path, "a");
    const char *write_result = w ? "WRITABLE" : strerror(errno);
    if (w) fclose(w);
    FILE *d = fopen(path, "rb");
    if (!d) { printf("cannot open %s: %s\n", path, strerror(errno)); return 4; }
    static char data[1 << 16];
    size_t m = fread(data, 1, sizeof data, d);
    fclose(d);
    FILE *out = fopen(getenv("WARDEN_OUTPUT"), "wb");
    if (!out) return 5;
    fprintf(out, "write: %s\n", write_result);
    fwrite(data, 1, m, out);
    fclose(out);
    return 0;
}
