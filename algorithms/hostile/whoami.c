/* Reports the uid, gid, supplementary groups and effective capabilities it runs with, to stdout
 * and to the output. An image may ship an /etc/group that puts its user in group 0: the
 * supplementary groups show whether the engine applied it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <unistd.h>

int main(void) {
    char caps[64] = "?";
    FILE *s = fopen("/proc/self/status", "r");
    if (s) {
        char line[256];
        while (fgets(line, sizeof line, s))
            if (strncmp(line, "CapEff:", 7) == 0) { sscanf(line + 7, "%63s", caps); }
        fclose(s);
    }
    gid_t groups[64];
    int ng = getgroups(64, groups);
    char glist[256] = "";
    for (int i = 0; i < ng; i++) {
        char g[16];
        snprintf(g, sizeof g, "%s%d", i ? "," : "", (int)groups[i]);
        strncat(glist, g, sizeof glist - strlen(glist) - 1);
    }
    char msg[400];
    int n = snprintf(msg, sizeof msg, "uid=%d gid=%d euid=%d groups=%s capeff=%s\n", (int)getuid(),
                     (int)getgid(), (int)geteuid(), glist, caps);
    fputs(msg, stdout);
    const char *out = getenv("WARDEN_OUTPUT");
    FILE *o = out ? fopen(out, "w") : NULL;
    if (!o) { perror("open output"); return 2; }
    fwrite(msg, 1, n, o);
    fclose(o);
    return 0;
}
