/* Isolation self-check probe, run hardened by the node at start-up. Prints one line per check
 * ("ok ..." or "FAIL ...") and exits 0 only if every check holds. Sends no network traffic:
 * it inspects the interfaces and routes it can see instead. The limits the node asked for come
 * in WARDEN_PROBE_{PIDS,MEMORY,MILLICPUS,SCRATCH,FSIZE}; each must be in force (cgroup v1 or v2),
 * or the engine silently ignores it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
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

/* The first readable file among `paths`: its first number, or -1 for "max"; -2 if none reads. */
static long long cgroup_value(const char *const *paths, char *which, size_t which_len) {
    for (; *paths; paths++) {
        FILE *f = fopen(*paths, "r");
        if (!f) continue;
        char buf[64] = "";
        char *got = fgets(buf, sizeof buf, f);
        fclose(f);
        if (!got) continue;
        snprintf(which, which_len, "%s", *paths);
        if (strncmp(buf, "max", 3) == 0) return -1;
        return atoll(buf);
    }
    return -2;
}

static long long expected(const char *env) {
    const char *v = getenv(env);
    return v ? atoll(v) : -1;
}

/* A cgroup limit at most `want` (v1 reports "no limit" as a huge number, v2 as "max"). */
static void cgroup_limit(const char *what, const char *env, const char *const *paths) {
    long long want = expected(env);
    if (want < 0) { check(0, what, "the node gave no expected value"); return; }
    char which[128] = "", detail[256];
    long long have = cgroup_value(paths, which, sizeof which);
    if (have == -2) { check(0, what, "no cgroup file shows it"); return; }
    snprintf(detail, sizeof detail, "%s = %lld, asked %lld", which, have, want);
    check(have >= 0 && have <= want, what, detail);
}

static void cpu_limit(void) {
    long long want = expected("WARDEN_PROBE_MILLICPUS");
    if (want < 0) { check(0, "cpu limit", "the node gave no expected value"); return; }
    long long quota = -2, period = -2;
    char detail[256];
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32] = "";
        if (fscanf(f, "%31s %lld", q, &period) == 2) quota = strcmp(q, "max") == 0 ? -1 : atoll(q);
        fclose(f);
    } else {
        const char *qp[] = {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", NULL};
        const char *pp[] = {"/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", NULL};
        char which[128];
        quota = cgroup_value(qp, which, sizeof which);
        period = cgroup_value(pp, which, sizeof which);
    }
    if (quota == -2 || period <= 0) { check(0, "cpu limit", "no cgroup file shows it"); return; }
    long long milli = quota < 0 ? -1 : quota * 1000 / period;
    snprintf(detail, sizeof detail, "quota %lld per %lld us = %lld millicpus, asked %lld", quota, period, milli, want);
    check(milli >= 0 && milli <= want, "cpu limit", detail);
}

static void scratch_size(void) {
    long long want = expected("WARDEN_PROBE_SCRATCH");
    struct statvfs st;
    char detail[256];
    if (want < 0) { check(0, "scratch /tmp size", "the node gave no expected value"); return; }
    if (statvfs("/tmp", &st) != 0) { check(0, "scratch /tmp size", strerror(errno)); return; }
    long long size = (long long)st.f_blocks * (long long)st.f_frsize;
    /* the kernel rounds a tmpfs size up to whole pages */
    snprintf(detail, sizeof detail, "%lld bytes, asked %lld", size, want);
    check(size > 0 && size <= want + 4096, "scratch /tmp size", detail);
}

static void file_size_limit(void) {
    long long want = expected("WARDEN_PROBE_FSIZE");
    struct rlimit rl;
    char detail[256];
    if (want < 0) { check(0, "file size limit", "the node gave no expected value"); return; }
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0) { check(0, "file size limit", strerror(errno)); return; }
    snprintf(detail, sizeof detail, "%lld, asked %lld", (long long)rl.rlim_cur, want);
    check(rl.rlim_cur != RLIM_INFINITY && rl.rlim_max != RLIM_INFINITY && (long long)rl.rlim_max <= want,
          "file size limit", detail);
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
    const char *pids[] = {"/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max", NULL};
    cgroup_limit("pids limit", "WARDEN_PROBE_PIDS", pids);
    const char *memory[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes", NULL};
    cgroup_limit("memory limit", "WARDEN_PROBE_MEMORY", memory);
    cpu_limit();
    scratch_size();
    file_size_limit();
    fflush(stdout);
    return failures == 0 ? 0 : 1;
}
