/* Tries TCP connect and UDP send to every HOST:PORT in $WARDEN_TARGETS (comma separated).
 * Prints one line per attempt. Exits 0 if any attempt got through (attack succeeded),
 * 1 if every attempt was blocked. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int try_one(const char *host, int port, int type) {
    const char *kind = type == SOCK_STREAM ? "tcp" : "udp";
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        printf("bad target %s\n", host);
        return 0;
    }
    int fd = socket(AF_INET, type, 0);
    if (fd < 0) { printf("blocked %s %s:%d socket: %s\n", kind, host, port, strerror(errno)); return 0; }
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("blocked %s %s:%d connect: %s\n", kind, host, port, strerror(errno));
    } else {
        const char msg[] = "exfiltrated\n";
        ssize_t n = send(fd, msg, sizeof msg - 1, 0);
        if (n < 0) {
            printf("blocked %s %s:%d send: %s\n", kind, host, port, strerror(errno));
        } else {
            printf("REACHED %s %s:%d sent %zd bytes\n", kind, host, port, n);
            ok = 1;
        }
    }
    close(fd);
    return ok;
}

int main(void) {
    const char *targets = getenv("WARDEN_TARGETS");
    if (!targets) { printf("WARDEN_TARGETS unset\n"); return 2; }
    char *list = strdup(targets);
    int reached = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        char *colon = strrchr(t, ':');
        if (!colon) continue;
        *colon = 0;
        int port = atoi(colon + 1);
        reached |= try_one(t, port, SOCK_STREAM);
        reached |= try_one(t, port, SOCK_DGRAM);
    }
    fflush(stdout);
    return reached ? 0 : 1;
}
