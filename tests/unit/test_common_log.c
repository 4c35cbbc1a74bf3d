/* Unit tests for common/log.c: levels, text and JSON lines, escaping. */
#include "common/common.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static char *capture(imago_log_format fmt, imago_log_level min, imago_log_level lvl,
                     const char *msg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    imago_log_setup(min, fmt, f);
    imago_log(lvl, "test", "%s", msg);
    imago_log_setup(IMAGO_LOG_INFO, IMAGO_LOG_TEXT, NULL);
    fclose(f);
    return buf;
}

int main(void)
{
    char *s = capture(IMAGO_LOG_TEXT, IMAGO_LOG_INFO, IMAGO_LOG_WARN, "disk almost full");
    ok(strstr(s, "warn") && strstr(s, "test: disk almost full\n"), "text line: %s", s);
    free(s);

    s = capture(IMAGO_LOG_TEXT, IMAGO_LOG_WARN, IMAGO_LOG_INFO, "hidden");
    is_str(s, "", "below min level is dropped");
    free(s);

    s = capture(IMAGO_LOG_JSON, IMAGO_LOG_DEBUG, IMAGO_LOG_ERROR, "quote \" and \\ and \n");
    ok(strstr(s, "\"level\":\"error\"") != NULL, "json level");
    ok(strstr(s, "\"module\":\"test\"") != NULL, "json module");
    ok(strstr(s, "\"msg\":\"quote \\\" and \\\\ and \\n\"") != NULL, "json escaping: %s", s ? s : "(null)");
    ok(s[0] == '{' && s[strlen(s) - 2] == '}' && s[strlen(s) - 1] == '\n', "one object per line");
    free(s);

    imago_log_level l;
    is_int(imago_log_level_parse("debug", &l), 0, "parse debug");
    is_int(l, IMAGO_LOG_DEBUG, "debug value");
    is_int(imago_log_level_parse("loud", &l), IMAGO_ERR_INVALID, "bad level refused");
    return tap_done();
}
