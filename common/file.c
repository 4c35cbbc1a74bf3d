/* Whole-file reads for the command line and start-up (imago_read_file). */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int imago_read_file(const char *path, size_t max_bytes, void **data, size_t *len,
                    imago_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return imago_error_set(err, IMAGO_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = imago_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) { /* room for the terminator */
            if (cap > max_bytes) {
                fclose(f);
                free(buf);
                return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "%s: larger than %zu bytes",
                                       path, max_bytes);
            }
            cap *= 2;
            buf = imago_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return imago_error_set(err, IMAGO_ERR_IO, "cannot read %s", path);
    }
    if (n > max_bytes) {
        free(buf);
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "%s: larger than %zu bytes", path,
                               max_bytes);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
