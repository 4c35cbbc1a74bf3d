/* Shared unit-test helpers (see testutil.h). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "tap.h"

char *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

unsigned char *testutil_read_fixture(const char *name, size_t *len)
{
    const char *root = getenv("IMAGO_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/%s", root ? root : ".", name);
    unsigned char *buf = (unsigned char *)testutil_read_file(path, len);
    if (!buf)
        tap_bail(path);
    return buf;
}
