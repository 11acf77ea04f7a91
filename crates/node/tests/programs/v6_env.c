/* What a vantage6 4.x algorithm sees (docs/vantage6.md): decodes the environment as
 * vantage6-algorithm-tools' get_env_var does (base32, '!' for '='), reads INPUT_FILE,
 * TOKEN_FILE and the first requested database's file, asks the proxy socket for the
 * organizations with the token file's content as its bearer token and with a wrong one, and
 * writes one "key=value" line each to OUTPUT_FILE (decoded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The status code of GET /v1/organizations over the proxy socket with `token`. */
static int ask(const char *token) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, "/mnt/proxy/proxy.sock");
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { close(s); return -2; }
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "GET /v1/organizations HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\n"
                     "Connection: close\r\n\r\n", token);
    if (write(s, req, (size_t)n) != n) { close(s); return -3; }
    char resp[64] = {0};
    ssize_t r = read(s, resp, sizeof resp - 1);
    close(s);
    if (r < 12) return -4;
    return atoi(resp + 9);
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
    FILE *f = fopen(dec("OUTPUT_FILE"), "wb");
    if (!f) { perror("output"); return 5; }
    fwrite(out, 1, o, f);
    fclose(f);
    return 0;
}
