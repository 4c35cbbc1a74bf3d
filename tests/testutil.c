/* Shared unit-test helpers (see testutil.h). */
#include <math.h>
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

const char *testutil_reference_python(const char *modules, const char **root)
{
    const char *r = getenv("IMAGO_SOURCE_ROOT");
    const char *py = getenv("IMAGO_PYTHON");
    if (!py || !py[0])
        py = "/usr/bin/python3";
    if (!r) {
        tap_skip(1, "IMAGO_SOURCE_ROOT not set (run through meson test): no reference fixture");
        return NULL;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import %s' 2>/dev/null", py, modules);
    if (access(py, X_OK) != 0 || system(cmd) != 0) {
        char why[256];
        snprintf(why, sizeof why,
                 "the reference Python (%s) is absent: no comparison with the reference", modules);
        tap_skip(1, why);
        return NULL;
    }
    *root = r;
    return py;
}

void testutil_mkdtemp(const char *tag, char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/imago-%s-XXXXXX", tag);
    if (!mkdtemp(buf))
        tap_bail("mkdtemp failed");
}

void testutil_rmdir(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
}

int testutil_run_fixture(const char *py, const char *root, const char *script, const char *out,
                         const char *args, const char *label)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tools/%s' '%s' %s", py, root, script, out, args);
    if (system(cmd) == 0)
        return 0;
    ok(0, "%s: tools/%s ran", label, script);
    return -1;
}

double testutil_urand(unsigned long long *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (double)(*state >> 11) / 9007199254740992.0;
}

double testutil_nrand(unsigned long long *state)
{
    return sqrt(-2 * log(testutil_urand(state) + 1e-12)) * cos(2 * M_PI * testutil_urand(state));
}

double testutil_cosine(const float *a, const float *b, int d)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < d; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}
