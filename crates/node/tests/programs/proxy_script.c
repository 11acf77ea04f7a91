/* A scripted proxy client for the node's tests. The input's "args" is a JSON string holding
 * commands separated by ';':
 *   [T=<token> ][L=<n> ]METHOD PATH[ BODY]   an HTTP request over $WARDEN_PROXY_SOCKET (BODY
 *                                    with ' for "); L= declares a Content-Length of n bytes
 *                                    whatever the body's length (and keeps the connection open)
 *   TOKEN                            writes $WARDEN_TOKEN
 *   DEEP <org>                       POST a subtask at organization <org> running "DEEP <org>",
 *                                    and when it is created, wait for its results (recursion
 *                                    until the node refuses)
 * In a PATH, LAST stands for the last "task_id" an answer carried.
 * For each request it writes "<status code> <body>\n" to the output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char input[1 << 16];
static char resp[1 << 20];
static long last_task = 0;

static int request(FILE *out, const char *token, const char *method, const char *path, const char *body,
                   long declared) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    const char *sock = getenv("WARDEN_PROXY_SOCKET");
    strncpy(sa.sun_path, sock ? sock : "/mnt/proxy/proxy.sock", sizeof sa.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(out, "000 connect failed: %s\n", strerror(errno));
        if (s >= 0) close(s);
        return 0;
    }
    char head[4096];
    size_t blen = body ? strlen(body) : 0;
    int h = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", declared >= 0 ? (size_t)declared : blen);
    if (write(s, head, h) < 0 || (blen && write(s, body, blen) < 0)) {
        fprintf(out, "000 write failed\n");
        close(s);
        return 0;
    }
    size_t got = 0;
    ssize_t n;
    while (got < sizeof resp - 1 && (n = read(s, resp + got, sizeof resp - 1 - got)) > 0) got += n;
    resp[got] = 0;
    close(s);
    const char *status = strchr(resp, ' ');
    const char *payload = strstr(resp, "\r\n\r\n");
    fprintf(out, "%.3s %s\n", status ? status + 1 : "000", payload ? payload + 4 : "");
    const char *t = payload ? strstr(payload, "\"task_id\":") : NULL;
    if (t) last_task = strtol(t + 10, NULL, 10);
    return status ? atoi(status + 1) : 0;
}

int main(void) {
    FILE *in = fopen("/mnt/input/input", "rb");
    if (!in) { perror("input"); return 2; }
    size_t n = fread(input, 1, sizeof input - 1, in);
    input[n] = 0;
    fclose(in);
    char *args = strstr(input, "\"args\":\"");
    if (!args) { printf("no args string\n"); return 3; }
    args += 8;
    char *end = strchr(args, '"');
    if (!end) { printf("unterminated args\n"); return 3; }
    *end = 0;
    for (char *p = args; *p; p++) if (*p == '\'') *p = '"';
    const char *out_path = getenv("WARDEN_OUTPUT");
    FILE *out = fopen(out_path ? out_path : "/mnt/output/output", "wb");
    if (!out) { perror("output"); return 4; }
    char *save = NULL;
    for (char *cmd = strtok_r(args, ";", &save); cmd; cmd = strtok_r(NULL, ";", &save)) {
        if (strcmp(cmd, "TOKEN") == 0) {
            const char *t = getenv("WARDEN_TOKEN");
            fprintf(out, "TOKEN %s\n", t ? t : "");
            continue;
        }
        const char *token = getenv("WARDEN_TOKEN");
        if (strncmp(cmd, "DEEP ", 5) == 0) {
            long org = atol(cmd + 5);
            char body[256], path[128];
            snprintf(body, sizeof body,
                     "{\"function\":\"script\",\"args\":\"DEEP %ld\",\"organizations\":[%ld]}", org, org);
            if (request(out, token, "POST", "/v1/subtasks", body, -1) == 200) {
                snprintf(path, sizeof path, "/v1/subtasks/%ld/results?wait=60", last_task);
                request(out, token, "GET", path, NULL, -1);
            }
            fflush(out);
            continue;
        }
        if (strncmp(cmd, "T=", 2) == 0) {
            token = cmd + 2;
            char *sp = strchr(cmd, ' ');
            if (!sp) continue;
            *sp = 0;
            cmd = sp + 1;
            if (strcmp(token, "NONE") == 0) token = NULL;
        }
        long declared = -1;
        if (strncmp(cmd, "L=", 2) == 0) {
            declared = atol(cmd + 2);
            char *sp = strchr(cmd, ' ');
            if (!sp) continue;
            cmd = sp + 1;
        }
        char *method = cmd;
        char *path = strchr(method, ' ');
        if (!path) continue;
        *path++ = 0;
        char *body = strchr(path, ' ');
        if (body) *body++ = 0;
        char real_path[1024];
        char *last = strstr(path, "LAST");
        if (last) {
            *last = 0;
            snprintf(real_path, sizeof real_path, "%s%ld%s", path, last_task, last + 4);
        } else {
            snprintf(real_path, sizeof real_path, "%s", path);
        }
        request(out, token, method, real_path, body, declared);
        fflush(out);
    }
    fclose(out);
    return 0;
}
