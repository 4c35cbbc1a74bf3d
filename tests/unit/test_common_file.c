/* Unit tests for common/file.c: whole-file reads, their limit and errors. */
#include "common/common.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_bytes(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; i < n; i++)
        fputc((int)(i * 7 % 251), f);
    fclose(f);
}

int main(void)
{
    char dir[] = "/tmp/imago_test_file_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/f", dir);
    imago_error err;
    void *data = NULL;
    size_t len = 0;

    /* sizes around the first buffer (64 KiB) and its doubling */
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 300000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        write_bytes(path, sizes[k]);
        imago_error_clear(&err);
        int rc = imago_read_file(path, 1 << 20, &data, &len, &err);
        int same = rc == 0 && len == sizes[k] && ((unsigned char *)data)[len] == 0;
        for (size_t i = 0; same && i < len; i++)
            same = ((unsigned char *)data)[i] == (unsigned char)(i * 7 % 251);
        ok(same, "%zu bytes read back exactly, NUL after them", sizes[k]);
        free(data);
        data = NULL;
    }

    write_bytes(path, 1000);
    imago_error_clear(&err);
    is_int(imago_read_file(path, 1000, &data, &len, &err), 0, "exactly max_bytes is accepted");
    free(data);
    data = NULL;
    imago_error_clear(&err);
    is_int(imago_read_file(path, 999, &data, &len, &err), IMAGO_ERR_TOO_LARGE,
           "one byte over max_bytes -> TOO_LARGE");
    ok(data == NULL && strstr(err.msg, "larger than 999 bytes"), "no output, says the limit (%s)",
       err.msg);
    write_bytes(path, 200000);
    imago_error_clear(&err);
    is_int(imago_read_file(path, 70000, &data, &len, &err), IMAGO_ERR_TOO_LARGE,
           "a file far over a limit past the first buffer -> TOO_LARGE");

    unlink(path);
    imago_error_clear(&err);
    is_int(imago_read_file(path, 100, &data, &len, &err), IMAGO_ERR_IO, "missing file -> IO");
    ok(strstr(err.msg, path) != NULL, "the message names the path (%s)", err.msg);
    imago_error_clear(&err);
    is_int(imago_read_file(dir, 100, &data, &len, &err), IMAGO_ERR_IO, "a directory -> IO");
    rmdir(dir);
    return tap_done();
}
