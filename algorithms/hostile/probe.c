/* Isolation self-check probe, run hardened by the node at start-up. Prints one line per check
 * ("ok ..." or "FAIL ...") and exits 0 only if every check holds. Sends no network traffic:
 * it inspects the interfaces and routes it can see instead. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

static void check(int ok, const char *what, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok" : "FAIL", what, detail[0] ? ": " : "", detail);
    if (!ok) failures++;
}

static void interfaces(void) {
    FILE *f = fopen("/proc/net/dev", "r");
    if (!f) { check(0, "network interfaces", "cannot read /proc/net/dev"); return; }
    char line[512], seen[256] = "";
    int others = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (++n <= 2) continue; /* two header lines */
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        char *name = line;
        while (*name == ' ') name++;
        if (strlen(seen) + strlen(name) + 2 < sizeof seen) { strcat(seen, name); strcat(seen, " "); }
        if (strcmp(name, "lo") != 0) others++;
    }
    fclose(f);
    check(others == 0, "only the loopback interface", seen);
}

static void routes(void) {
    FILE *f = fopen("/proc/net/route", "r");
    if (!f) { check(0, "no ipv4 routes", "cannot read /proc/net/route"); return; }
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) n++;
    fclose(f);
    check(n <= 1, "no ipv4 routes", n <= 1 ? "" : "a route exists");
}

static void read_only_root(void) {
    int fd = open("/.warden-probe", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { close(fd); unlink("/.warden-probe"); check(0, "read-only root filesystem", "created /.warden-probe"); return; }
    check(errno == EROFS, "read-only root filesystem", strerror(errno));
}

static void status_field(const char *key, const char *want, const char *what) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256], value[128] = "missing";
    size_t k = strlen(key);
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, key, k) == 0 && line[k] == ':') sscanf(line + k + 1, "%127s", value);
        fclose(f);
    }
    check(strcmp(value, want) == 0, what, value);
}

int main(void) {
    char ids[64];
    snprintf(ids, sizeof ids, "uid=%d gid=%d", (int)getuid(), (int)getgid());
    check(getuid() != 0 && geteuid() != 0 && getgid() != 0, "non-root user", ids);
    interfaces();
    routes();
    read_only_root();
    status_field("CapEff", "0000000000000000", "no effective capabilities");
    status_field("CapPrm", "0000000000000000", "no permitted capabilities");
    status_field("CapBnd", "0000000000000000", "empty capability bounding set");
    status_field("NoNewPrivs", "1", "no-new-privileges");
    status_field("Seccomp", "2", "seccomp filter active");
    check(access("/var/run/docker.sock", F_OK) != 0 && access("/run/docker.sock", F_OK) != 0,
          "no docker socket", "");
    int fd = open("/tmp/.warden-probe", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    check(fd >= 0, "scratch /tmp writable", fd >= 0 ? "" : strerror(errno));
    if (fd >= 0) { close(fd); unlink("/tmp/.warden-probe"); }
    fflush(stdout);
    return failures == 0 ? 0 : 1;
}
