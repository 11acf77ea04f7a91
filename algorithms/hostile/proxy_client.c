/* The one sanctioned channel: connects to the node's proxy over $WARDEN_PROXY_SOCKET, sends a
 * line, writes the reply to the output. Also tries to plant a file next to the socket (must
 * fail: the socket's directory is mounted read-only). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void) {
    int fd = open("/mnt/proxy/planted", O_WRONLY | O_CREAT, 0644);
    printf("%s /mnt/proxy/planted: %s\n", fd >= 0 ? "PLANTED" : "blocked", fd >= 0 ? "created" : strerror(errno));
    if (fd >= 0) close(fd);
    const char *path = getenv("WARDEN_PROXY_SOCKET");
    const char *out = getenv("WARDEN_OUTPUT");
    if (!path || !out) { printf("WARDEN_PROXY_SOCKET or WARDEN_OUTPUT unset\n"); return 2; }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("proxy connect failed: %s\n", strerror(errno));
        return 3;
    }
    const char hello[] = "hello from the algorithm\n";
    if (write(s, hello, sizeof hello - 1) < 0) { perror("write"); return 4; }
    char buf[256];
    ssize_t n = read(s, buf, sizeof buf);
    close(s);
    if (n <= 0) { printf("no reply\n"); return 5; }
    FILE *o = fopen(out, "w");
    if (!o) { perror("open output"); return 6; }
    fwrite(buf, 1, n, o);
    fclose(o);
    printf("proxy replied %zd bytes\n", n);
    return 0;
}
