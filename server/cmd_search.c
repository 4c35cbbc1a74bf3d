/* `imago search IMAGE`: a query against a running server (--server URL: a
 * plain HTTP/1.1 POST /v1/search over a socket, no client library; prints
 * the server's JSON answer) or offline on a data dir (the same engine and
 * index in-process; prints one ranked line per hit).
 */
#include "cmd_index.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

static const imago_config_flag search_flags[] = {
    {"server", IMAGO_CONFIG_ARG_REQUIRED}, {"k", IMAGO_CONFIG_ARG_REQUIRED},
    {"box", IMAGO_CONFIG_ARG_REQUIRED},    {"token", IMAGO_CONFIG_ARG_REQUIRED},
    {"help", IMAGO_CONFIG_ARG_NONE},       {NULL, IMAGO_CONFIG_ARG_NONE},
};

/* Inputs are read whole: images and .npy tensors up to 2 GiB. */
#define INPUT_MAX_BYTES ((size_t)1 << 31)

static int parse_box(const char *s, double box[4])
{
    char tail;
    return sscanf(s, "%lf,%lf,%lf,%lf%c", &box[0], &box[1], &box[2], &box[3], &tail) == 4 ? 0 : -1;
}

/* POST the image to URL/v1/search; prints the body; 0 on HTTP 200. */
static int search_remote(const char *url, const char *token, int k, const char *box,
                         const uint8_t *img, size_t len)
{
    char host[256], port[16] = "80", prefix[512] = "";
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "imago search: --server: only http:// URLs (got %s)\n", url);
        return IMAGO_EXIT_USAGE;
    }
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof host) {
        fprintf(stderr, "imago search: --server: bad URL %s\n", url);
        return IMAGO_EXIT_USAGE;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (slash)
        snprintf(prefix, sizeof prefix, "%s", slash);
    size_t pl = strlen(prefix);
    while (pl > 0 && prefix[pl - 1] == '/')
        prefix[--pl] = '\0';
    char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon) {
        if (host[0] == '[')
            colon++;
        snprintf(port, sizeof port, "%s", colon + 1);
        *colon = '\0';
    }
    char *hostname = host;
    if (host[0] == '[') {
        hostname = host + 1;
        char *rb = strchr(hostname, ']');
        if (rb)
            *rb = '\0';
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int grc = getaddrinfo(hostname, port, &hints, &ai);
    if (grc != 0) {
        fprintf(stderr, "imago search: %s: %s\n", hostname, gai_strerror(grc));
        return IMAGO_EXIT_FAILURE;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "imago search: cannot connect to %s:%s: %s\n", hostname, port,
                strerror(errno));
        return IMAGO_EXIT_FAILURE;
    }
    const char *ctype = len >= 8 && memcmp(img, "\x89PNG", 4) == 0 ? "image/png" : "image/jpeg";
    char head[2048];
    int n =
        snprintf(head, sizeof head,
                 "POST %s/v1/search?k=%d%s%s HTTP/1.1\r\nHost: %s:%s\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                 "%s%s%s\r\n",
                 prefix, k, box ? "&bbox=" : "", box ? box : "", hostname, port, ctype, len,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) {
        close(fd);
        fprintf(stderr, "imago search: request too long\n");
        return IMAGO_EXIT_USAGE;
    }
    int ok = 1;
    const uint8_t *parts[2] = {(const uint8_t *)head, img};
    size_t lens[2] = {(size_t)n, len};
    for (int p = 0; p < 2 && ok; p++) {
        size_t off = 0;
        while (off < lens[p]) {
            ssize_t w = send(fd, parts[p] + off, lens[p] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                ok = 0;
                break;
            }
            off += (size_t)w;
        }
    }
    size_t cap = 1 << 16, got = 0;
    char *resp = imago_xmalloc(cap + 1);
    ssize_t r;
    while ((r = recv(fd, resp + got, cap - got, 0)) > 0) {
        got += (size_t)r;
        if (got == cap) {
            cap *= 2;
            resp = imago_xrealloc(resp, cap + 1);
        }
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) {
        fprintf(stderr, "imago search: no HTTP answer from %s%s\n", url,
                ok ? "" : " (sending failed)");
        free(resp);
        return IMAGO_EXIT_FAILURE;
    }
    char *body = strstr(resp, "\r\n\r\n");
    body = body ? body + 4 : resp + got;
    /* Connection: close and no chunking from imago: the body is the rest */
    if (status == 200) {
        printf("%s\n", body);
    } else {
        fprintf(stderr, "imago search: HTTP %d: %s\n", status, body);
    }
    free(resp);
    return status == 200 ? IMAGO_EXIT_OK : IMAGO_EXIT_FAILURE;
}

static int search_local(const imago_config *cfg, int k, const char *box, const uint8_t *img,
                        size_t len)
{
    imago_error err;
    imago_error_clear(&err);
    imago_stack st;
    if (imago_stack_open(cfg, &st, &err) != 0) {
        fprintf(stderr, "imago search: %s\n", err.msg);
        return IMAGO_EXIT_FAILURE;
    }
    imago_decode_params dp = imago_decode_params_default();
    if (box) {
        dp.has_box = 1;
        parse_box(box, dp.box);
    }
    int rc = IMAGO_EXIT_OK;
    float *q = imago_xcalloc((size_t)st.model.dim, sizeof *q);
    imago_index_hit *hits = imago_xcalloc((size_t)k, sizeof *hits);
    int nh = 0;
    imago_index_search_params sp = imago_index_search_params_default();
    sp.k = k;
    if (imago_batcher_embed_sync(st.batcher, img, len, &dp, q, NULL, &err) != 0 ||
        imago_index_search(st.index, q, 1, &sp, hits, &nh, NULL, &err) != 0) {
        fprintf(stderr, "imago search: %s\n", err.msg);
        rc = IMAGO_EXIT_FAILURE;
    }
    for (int i = 0; rc == 0 && i < nh; i++) {
        imago_image_info *info = NULL;
        if (imago_index_get(st.index, hits[i].id, &info, &err) != 0)
            continue;
        printf("%3d  %.6f  %6lld  %s  %s\n", i + 1, hits[i].score, (long long)hits[i].id,
               info->external_id, info->uri ? info->uri : "");
        imago_image_info_free(info);
    }
    free(hits);
    free(q);
    imago_stack_close(&st);
    return rc;
}

int imago_cmd_search(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return imago_cli_help(stdout, "search");
    /* -k N is accepted as --k N */
    char **args = imago_xcalloc((size_t)argc + 1, sizeof *args);
    for (int i = 0; i < argc; i++)
        args[i] = strcmp(argv[i], "-k") == 0 ? "--k" : argv[i];
    imago_config *cfg = NULL;
    char **rest = NULL;
    int n_rest = 0;
    int rc = imago_cli_load_config("search", argc, args, search_flags, &cfg, &n_rest, &rest);
    if (rc != 0) {
        free(args);
        return rc;
    }
    const char *server = NULL, *box = NULL, *token = NULL, *image = NULL;
    int k = 10;
    for (int i = 0; i < n_rest; i++) {
        const char *a = rest[i];
        const char *v = i + 1 < n_rest ? rest[i + 1] : NULL;
        if (strcmp(a, "--server") == 0 && v) {
            server = v;
            i++;
        } else if (strcmp(a, "--k") == 0 && v) {
            char *end;
            long kk = strtol(v, &end, 10);
            if (*end || kk < 1 || kk > IMAGO_SEARCH_K_MAX) {
                fprintf(stderr, "imago search: -k: 1..%d\n", IMAGO_SEARCH_K_MAX);
                rc = IMAGO_EXIT_USAGE;
                goto out;
            }
            k = (int)kk;
            i++;
        } else if (strcmp(a, "--box") == 0 && v) {
            double b[4];
            if (parse_box(v, b) != 0) {
                fprintf(stderr, "imago search: --box: x1,y1,x2,y2\n");
                rc = IMAGO_EXIT_USAGE;
                goto out;
            }
            box = v;
            i++;
        } else if (strcmp(a, "--token") == 0 && v) {
            token = v;
            i++;
        } else if (strncmp(a, "--", 2) != 0 && !image) {
            image = a;
        } else {
            fprintf(stderr, "imago search: unexpected argument '%s'\n", a);
            rc = IMAGO_EXIT_USAGE;
            goto out;
        }
    }
    if (!image) {
        fprintf(stderr, "imago search: which image? usage: imago search IMAGE [--server URL]\n");
        rc = IMAGO_EXIT_USAGE;
        goto out;
    }
    {
        void *bytes = NULL;
        size_t len = 0;
        imago_error err;
        imago_error_clear(&err);
        if (imago_read_file(image, INPUT_MAX_BYTES, &bytes, &len, &err) != 0) {
            fprintf(stderr, "imago search: %s\n", err.msg);
            rc = IMAGO_EXIT_FAILURE;
            goto out;
        }
        uint8_t *img = bytes;
        if (!token && cfg->auth.search_token[0])
            token = cfg->auth.search_token;
        else if (!token && cfg->auth.admin_token[0])
            token = cfg->auth.admin_token;
        rc = server ? search_remote(server, token, k, box, img, len)
                    : search_local(cfg, k, box, img, len);
        free(img);
    }
out:
    free(rest);
    free(args);
    imago_config_free(cfg);
    return rc;
}
