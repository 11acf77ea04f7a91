/* Tries to create and to modify files on the root filesystem, the data mount and the input mount.
 * Exits 0 if any write succeeded (attack succeeded), 1 if all were refused. Writing to /tmp
 * (the size-capped scratch tmpfs) is expected to work and is reported, not counted; it is then
 * filled until the kernel refuses, and the bytes written are reported. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int try_write(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd < 0) { printf("blocked open %s: %s\n", path, strerror(errno)); return 0; }
    ssize_t n = write(fd, "tampered\n", 9);
    close(fd);
    if (n < 0) { printf("blocked write %s: %s\n", path, strerror(errno)); return 0; }
    printf("WROTE %s\n", path);
    return 1;
}

int main(void) {
    int wrote = 0;
    wrote |= try_write("/pwned", O_WRONLY | O_CREAT | O_TRUNC);
    wrote |= try_write("/writable", O_WRONLY | O_APPEND);
    wrote |= try_write("/mnt/data/pwned", O_WRONLY | O_CREAT | O_TRUNC);
    wrote |= try_write("/mnt/data/data.csv", O_WRONLY | O_APPEND);
    wrote |= try_write("/mnt/input/pwned", O_WRONLY | O_CREAT | O_TRUNC);
    if (unlink("/mnt/data/data.csv") == 0) { printf("DELETED /mnt/data/data.csv\n"); wrote = 1; }
    else printf("blocked unlink /mnt/data/data.csv: %s\n", strerror(errno));
    if (mkdir("/mnt/data/dir", 0755) == 0) { printf("MKDIR /mnt/data/dir\n"); wrote = 1; }
    else printf("blocked mkdir /mnt/data/dir: %s\n", strerror(errno));
    int fd = open("/tmp/scratch", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("scratch /tmp %s\n", fd >= 0 ? "writable" : strerror(errno));
    if (fd >= 0) {
        /* Fill /tmp: the tmpfs must stop the writer at its size cap (ENOSPC). */
        static char block[65536];
        memset(block, 'x', sizeof block);
        long long total = 0;
        for (;;) {
            ssize_t n = write(fd, block, sizeof block);
            if (n <= 0) { printf("scratch full after %lld bytes: %s\n", total, n < 0 ? strerror(errno) : "no progress"); break; }
            total += n;
            if (total > (1LL << 34)) { printf("scratch unbounded: %lld bytes\n", total); break; }
        }
        close(fd);
    }
    fflush(stdout);
    return wrote ? 0 : 1;
}
