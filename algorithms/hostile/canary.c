/* Canary: listens on TCP and UDP port $CANARY_PORT (all addresses) and logs every connection
 * and datagram it receives. A canary that logs nothing was never reached. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *p = getenv("CANARY_PORT");
    int port = p ? atoi(p) : 7777;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    int one = 1;
    int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(t, (struct sockaddr *)&sa, sizeof sa) || listen(t, 16) || bind(u, (struct sockaddr *)&sa, sizeof sa)) {
        perror("canary bind");
        return 2;
    }
    printf("canary listening on %d\n", port);
    fflush(stdout);
    struct pollfd fds[2] = {{t, POLLIN, 0}, {u, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) continue;
        char buf[512];
        if (fds[0].revents & POLLIN) {
            int c = accept(t, NULL, NULL);
            if (c >= 0) {
                ssize_t n = read(c, buf, sizeof buf);
                printf("REACHED tcp %zd bytes\n", n);
                fflush(stdout);
                close(c);
            }
        }
        if (fds[1].revents & POLLIN) {
            ssize_t n = recv(u, buf, sizeof buf, 0);
            printf("REACHED udp %zd bytes\n", n);
            fflush(stdout);
        }
    }
}
