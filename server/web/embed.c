/* Build-time generator (a native executable run by meson): embeds the static
 * files of the web page into a C source as byte arrays, with their
 * Content-Type and an ETag (a content hash), so imago serves the page from
 * its own binary with no files to install and no tool beyond the compiler.
 *
 *   web_embed OUT.c FILE...   (each FILE is served as /static/<basename>)
 *
 * The output defines imago_web_assets[] / imago_web_asset_count (web.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static const char *content_type_of(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

/* The served name must be safe to print inside a C string and a URL. */
static int name_ok(const char *name)
{
    if (!*name || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "web_embed: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "web_embed: reading %s failed\n", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Two independent 64-bit FNV-1a hashes (different offsets): a 128-bit tag
 * that changes whenever the content does. */
static void content_tag(const unsigned char *d, size_t n, char out[40])
{
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    for (size_t i = 0; i < n; i++) {
        a = (a ^ d[i]) * 0x100000001b3ULL;
        b = (b ^ (unsigned char)(d[i] + 0x5a)) * 0x100000001b3ULL;
    }
    snprintf(out, 40, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

static int generate(FILE *out, int argc, char **argv)
{
    fprintf(out, "/* Generated at build time by server/web/embed.c from server/web/: "
                 "do not edit. */\n#include \"web.h\"\n\n");
    int n = argc - 2;
    char(*tags)[40] = calloc((size_t)n, sizeof *tags);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    if (!tags || !lens)
        return 1;
    for (int i = 0; i < n; i++) {
        const char *path = argv[i + 2], *name = basename_of(path);
        if (!name_ok(name) || !content_type_of(name)) {
            fprintf(stderr, "web_embed: %s: unsupported file name or type\n", path);
            return 1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(basename_of(argv[j + 2]), name) == 0) {
                fprintf(stderr, "web_embed: %s given twice\n", name);
                return 1;
            }
        unsigned char *d = slurp(path, &lens[i]);
        if (!d)
            return 1;
        content_tag(d, lens[i], tags[i]);
        /* an array, not a string literal: -Woverlength-strings (pedantic)
         * limits literals to 4095 bytes; the extra 0 lets text be printed */
        fprintf(out, "static const unsigned char asset_%d[%zu] = {", i, lens[i] + 1);
        for (size_t k = 0; k < lens[i]; k++)
            fprintf(out, "%s%u,", k % 24 ? "" : "\n    ", d[k]);
        fprintf(out, "\n    0};\n\n");
        free(d);
    }
    fprintf(out, "const imago_web_asset imago_web_assets[] = {\n");
    for (int i = 0; i < n; i++) {
        const char *name = basename_of(argv[i + 2]);
        fprintf(out, "    {\"%s\", \"%s\", asset_%d, %zu, \"\\\"%s\\\"\"},\n", name,
                content_type_of(name), i, lens[i], tags[i]);
    }
    fprintf(out, "};\nconst int imago_web_asset_count = %d;\n", n);
    free(tags);
    free(lens);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: web_embed OUT.c FILE...\n");
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        fprintf(stderr, "web_embed: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int rc = generate(out, argc, argv);
    if (fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "web_embed: writing %s failed\n", argv[1]);
        rc = 1;
    }
    if (rc != 0)
        remove(argv[1]); /* no half-written source for the next build */
    return rc;
}
