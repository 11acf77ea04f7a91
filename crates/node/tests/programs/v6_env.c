/* What a vantage6 4.x algorithm sees (docs/vantage6.md): decodes the environment as
 * vantage6-algorithm-tools' get_env_var does (base32, '!' for '='), reads INPUT_FILE,
 * TOKEN_FILE and the first requested database's file, asks the proxy socket for the
 * organizations with the token file's content as its bearer token and with a wrong one, and
 * writes one "key=value" line each to OUTPUT_FILE (decoded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char decoded[4096];

/* base32 (RFC 4648) with '!' as padding; returns the raw value when it does not decode. */
static const char *dec(const char *name) {
    const char *v = getenv(name);
    if (!v) return "(unset)";
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t len = strlen(v), o = 0;
    unsigned long long acc = 0;
    int bits = 0;
    if (len % 8) return v;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '!') break;
        const char *p = strchr(alpha, v[i]);
        if (!p || !*p) return v;
        acc = (acc << 5) | (unsigned long long)(p - alpha);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= sizeof decoded) return v;
            decoded[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    decoded[o] = 0;
    return decoded;
}

static size_t slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return (size_t)-1;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    return n;
}

static char resp[1 << 14];

/* `METHOD PATH` over the proxy socket with `token` (and a JSON `body` when not NULL): the
 * status code; the response is left in `resp`. */
static int call(const char *token, const char *method, const char *path, const char *body) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, "/mnt/proxy/proxy.sock");
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { close(s); return -2; }
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\n"
                     "Connection: close\r\n", method, path, token);
    if (body)
        n += snprintf(req + n, sizeof req - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    else
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    if (write(s, req, (size_t)n) != n) { close(s); return -3; }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(s, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
    resp[got] = 0;
    close(s);
    if (got < 12) return -4;
    return atoi(resp + 9);
}

/* `METHOD PATH` over TCP to 127.0.0.1:port (the shim), as AlgorithmClient speaks; the status
 * code, or -errno when the connection fails. */
static int tcp_call(int port, const char *token, const char *method, const char *path) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1000;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { int e = errno; close(s); return -e; }
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                     "Connection: keep-alive\r\n\r\n", method, path, port, token);
    if (write(s, req, (size_t)n) != n) { close(s); return -1001; }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(s, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
    resp[got] = 0;
    close(s);
    if (got < 12) return -1002;
    return atoi(resp + 9);
}

/* A TCP connection to ip:port: "connected", or the error's name. */
static const char *tcp_to(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return "socket";
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    if (rc == 0) return "connected";
    return e == ECONNREFUSED ? "refused" : e == ENETUNREACH ? "unreachable" : "other";
}

/* A UDP datagram to ip:53 (a DNS server): "sent", or the error's name. */
static const char *udp_to(const char *ip) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return "socket";
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    inet_pton(AF_INET, ip, &a.sin_addr);
    ssize_t rc = sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    if (rc == 1) return "sent";
    return e == ENETUNREACH ? "unreachable" : "other";
}

static int ask(const char *token) { return call(token, "GET", "/v1/organizations", NULL); }

/* The body of the last response, newlines flattened. */
static const char *body_of(void) {
    char *b = strstr(resp, "\r\n\r\n");
    if (!b) return "";
    b += 4;
    for (char *p = b; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    return b;
}

int main(void) {
    static char out[1 << 16], buf[1 << 15], token[4096];
    size_t o = 0;
#define PUT(...) o += (size_t)snprintf(out + o, sizeof out - o, __VA_ARGS__)
    const char *names[] = {"INPUT_FILE", "OUTPUT_FILE", "TOKEN_FILE", "TEMPORARY_FOLDER", "HOST",
                           "PORT", "API_PATH", "USER_REQUESTED_DATABASE_LABELS",
                           "RECORDS_DATABASE_URI", "RECORDS_DATABASE_TYPE", "OTHER_DATABASE_URI",
                           "WARDEN_TOKEN", NULL};
    for (int i = 0; names[i]; i++) PUT("%s=%s\n", names[i], dec(names[i]));
    char path[1024];
    snprintf(path, sizeof path, "%s", dec("INPUT_FILE"));
    if (slurp(path, buf, sizeof buf) != (size_t)-1) PUT("input=%s\n", buf);
    snprintf(path, sizeof path, "%s", dec("TOKEN_FILE"));
    if (slurp(path, token, sizeof token) != (size_t)-1) PUT("token=%s\n", token);
    snprintf(path, sizeof path, "%s", dec("RECORDS_DATABASE_URI"));
    size_t n = slurp(path, buf, sizeof buf);
    PUT("data_bytes=%ld\n", (long)n);
    PUT("other_mounted=%d\n", access("/mnt/data/other", F_OK) == 0);
    PUT("proxy_with_token=%d\n", ask(token));
    PUT("proxy_with_other=%d\n", ask("0123456789abcdef"));
    /* The vantage6 server-API subset, served by the node's proxy under this contract. */
    PUT("v6_organizations=%d ", call(token, "GET", "/api/organization?page=1", NULL));
    PUT("%s\n", body_of());
    PUT("v6_other_collaboration=%d\n",
        call(token, "GET", "/api/organization?collaboration_id=999999", NULL));
    PUT("v6_blobstream=%d ", call(token, "GET", "/api/blobstream/status", NULL));
    PUT("%s\n", body_of());
    PUT("v6_task_other_image=%d ",
        call(token, "POST", "/api/task",
             "{\"image\":\"evil.example/x:1\",\"collaboration_id\":1,\"organizations\":[]}"));
    PUT("%s\n", body_of());
    PUT("v6_result_not_mine=%d\n", call(token, "GET", "/api/result?task_id=1", NULL));
    PUT("v6_unknown_path=%d\n", call(token, "GET", "/api/user", NULL));
    PUT("v6_without_token=%d\n", call("x", "GET", "/api/organization", NULL));
    /* Through the shim on 127.0.0.1:PORT, as AlgorithmClient reaches the node. */
    int port = atoi(dec("PORT"));
    PUT("shim_organizations=%d\n", tcp_call(port, token, "GET", "/api/organization"));
    PUT("shim_without_token=%d\n", tcp_call(port, "x", "GET", "/api/organization"));
    PUT("shim_user=%d ", tcp_call(port, token, "GET", "/api/user"));
    PUT("%s\n", body_of());
    PUT("shim_warden_path=%d\n", tcp_call(port, token, "GET", "/v1/organizations"));
    PUT("shim_delete=%d\n", tcp_call(port, token, "DELETE", "/api/task/1"));
    /* Nothing else: the interfaces, other ports, the host, the gateway, DNS. */
    FILE *dev = fopen("/proc/net/dev", "r");
    int ifaces = 0, only_lo = 1;
    char line[512];
    while (dev && fgets(line, sizeof line, dev)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        ifaces++;
        *colon = 0;
        char *name = line;
        while (*name == ' ') name++;
        if (strcmp(name, "lo") != 0) only_lo = 0;
    }
    if (dev) fclose(dev);
    PUT("interfaces=%d only_lo=%d\n", ifaces, only_lo);
    /* The ports the test gives as args: the server's and the registry's, on the host. */
    snprintf(path, sizeof path, "%s", dec("INPUT_FILE"));
    slurp(path, buf, sizeof buf);
    char *a = strstr(buf, "\"args\":[");
    long p1 = 0, p2 = 0;
    if (a) { char *e; p1 = strtol(a + 8, &e, 10); if (*e == ',') p2 = strtol(e + 1, NULL, 10); }
    PUT("loopback_server=%s\n", p1 ? tcp_to("127.0.0.1", (int)p1) : "none");
    PUT("loopback_registry=%s\n", p2 ? tcp_to("127.0.0.1", (int)p2) : "none");
    PUT("gateway_server=%s\n", p1 ? tcp_to("172.17.0.1", (int)p1) : "none");
    PUT("outside=%s\n", tcp_to("1.1.1.1", 443));
    PUT("dns=%s dns_docker=%s\n", udp_to("8.8.8.8"), tcp_to("127.0.0.11", 53));
    FILE *f = fopen(dec("OUTPUT_FILE"), "wb");
    if (!f) { perror("output"); return 5; }
    fwrite(out, 1, o, f);
    fclose(f);
    return 0;
}
