/* Unit tests for common/error.c: first error wins, prefixes, names. */
#include "common/common.h"
#include "tap.h"

#include <string.h>

int main(void)
{
    imago_error err;
    imago_error_clear(&err);
    is_int(err.code, 0, "cleared error has code 0");
    is_str(err.msg, "", "cleared error has empty message");

    int rc = imago_error_set(&err, IMAGO_ERR_FORMAT, "bad %s at %d", "marker", 7);
    is_int(rc, IMAGO_ERR_FORMAT, "set returns the code");
    is_int(err.code, IMAGO_ERR_FORMAT, "code recorded");
    is_str(err.msg, "bad marker at 7", "message formatted");

    imago_error_set(&err, IMAGO_ERR_IO, "second");
    is_int(err.code, IMAGO_ERR_FORMAT, "first error wins (code)");
    is_str(err.msg, "bad marker at 7", "first error wins (message)");

    imago_error_prefix(&err, "decoding %s", "a.jpg");
    is_str(err.msg, "decoding a.jpg: bad marker at 7", "prefix prepended");

    imago_error ok_err;
    imago_error_clear(&ok_err);
    imago_error_prefix(&ok_err, "ctx");
    is_str(ok_err.msg, "", "prefix is a no-op without an error");

    is_int(imago_error_set(NULL, IMAGO_ERR_NOMEM, "x"), IMAGO_ERR_NOMEM, "NULL err accepted");

    char longmsg[2000];
    memset(longmsg, 'a', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    imago_error big;
    imago_error_clear(&big);
    imago_error_set(&big, IMAGO_ERR_INVALID, "%s", longmsg);
    is_int((long long)strlen(big.msg), IMAGO_ERROR_MSG_MAX - 1, "long message truncated safely");

    is_str(imago_error_name(IMAGO_ERR_TOO_LARGE), "too_large", "error name");
    is_str(imago_error_name(12345), "unknown", "unknown code has a name");
    int distinct = 1;
    for (int a = IMAGO_ERR_LAST_ + 1; a <= 0; a++)
        for (int b = a + 1; b <= 0; b++)
            if (strcmp(imago_error_name(a), imago_error_name(b)) == 0)
                distinct = 0;
    ok(distinct, "every code has a distinct name");
    return tap_done();
}
