/* An algorithm for the output-rule tests: writes its input's `args` value, as JSON, to the
 * output. The node hands it the canonical input (keys sorted, compact), so the input reads
 * {"args":<value>,"function":"<name>"} and the value ends at the last `,"function":`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    FILE *in = fopen("/mnt/input/input", "rb");
    if (!in) { perror("input"); return 2; }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    fclose(in);
    buf[n] = 0;
    const char *prefix = "{\"args\":";
    if (strncmp(buf, prefix, strlen(prefix)) != 0) { printf("no args first\n"); return 4; }
    const char *start = buf + strlen(prefix);
    const char *end = NULL;
    for (const char *p = start; (p = strstr(p, ",\"function\":")) != NULL; p++) end = p;
    if (!end) { printf("no function\n"); return 5; }
    const char *out_path = getenv("WARDEN_OUTPUT");
    FILE *out = fopen(out_path ? out_path : "/mnt/output/output", "wb");
    if (!out) { perror("output"); return 3; }
    fwrite(start, 1, (size_t)(end - start), out);
    fclose(out);
    printf("wrote %zu bytes\n", (size_t)(end - start));
    return 0;
}
