/* Floods the output directory: files of 64 KiB each (every one under the file-size limit) when
 * WARDEN_FLOOD=bytes (the default), empty files when WARDEN_FLOOD=entries. Never stops by itself. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *out = getenv("WARDEN_OUTPUT");
    const char *mode = getenv("WARDEN_FLOOD");
    if (!mode) mode = "bytes";
    if (!out) { fprintf(stderr, "WARDEN_OUTPUT is required\n"); return 2; }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int empty = strcmp(mode, "entries") == 0;
    static char block[65536];
    memset(block, 'x', sizeof block);
    for (long i = 0;; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/flood-%ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) { perror("open"); return 1; }
        if (!empty && write(fd, block, sizeof block) != (ssize_t)sizeof block) { perror("write"); return 1; }
        close(fd);
        if (i % 1000 == 0) { printf("%ld files\n", i); fflush(stdout); }
    }
}
