/* A trivial algorithm for the node's tests: writes "echo:" and its input to the output, and
 * "env-ok" when the contract's environment is complete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *vars[] = {"WARDEN_INPUT_DIR", "WARDEN_OUTPUT", "WARDEN_PROXY_SOCKET", "WARDEN_TOKEN",
                          "WARDEN_RUN_ID", "WARDEN_TASK_ID", "WARDEN_ORGANIZATION_ID",
                          "WARDEN_COLLABORATION_ID"};
    int env_ok = 1;
    for (unsigned i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (!getenv(vars[i]) || !*getenv(vars[i])) { printf("missing %s\n", vars[i]); env_ok = 0; }
    FILE *in = fopen("/mnt/input/input", "rb");
    if (!in) { perror("input"); return 2; }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    const char *out_path = getenv("WARDEN_OUTPUT");
    FILE *out = fopen(out_path ? out_path : "/mnt/output/output", "wb");
    if (!out) { perror("output"); return 3; }
    fputs(env_ok ? "env-ok echo:" : "env-missing echo:", out);
    fwrite(buf, 1, n, out);
    fclose(out);
    if (strstr(buf, "\"fail\"")) { printf("asked to fail\n"); return 7; }
    printf("echoed %zu bytes\n", n);
    return 0;
}
