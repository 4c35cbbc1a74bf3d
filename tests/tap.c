/* TAP output for the C test executables; see tap.h. */
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>

static int g_run, g_failed, g_planned = -1;

void tap_plan(int n)
{
    g_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
    g_run++;
    printf("%s %d - ", cond ? "ok" : "not ok", g_run);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        g_failed++;
        printf("#   failed at %s:%d\n", file, line);
    }
    fflush(stdout);
    return cond;
}

void tap_diag(const char *fmt, ...)
{
    printf("# ");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void tap_skip(int n, const char *reason)
{
    for (int i = 0; i < n; i++)
        printf("ok %d # SKIP %s\n", ++g_run, reason);
    fflush(stdout);
}

void tap_skip_all(const char *reason)
{
    /* Under meson's TAP protocol a non-zero exit is an ERROR whatever the
     * output says, and the plan "1..0 # SKIP reason" is what marks the test
     * skipped. Tests registered with the exitcode protocol use 77 instead. */
    printf("1..0 # SKIP %s\n", reason);
    fflush(stdout);
    exit(0);
}

void tap_bail(const char *reason)
{
    printf("Bail out! %s\n", reason);
    fflush(stdout);
    exit(1);
}

int tap_done(void)
{
    if (g_planned < 0)
        printf("1..%d\n", g_run);
    else if (g_planned != g_run) {
        printf("# planned %d tests but ran %d\n", g_planned, g_run);
        g_failed++;
    }
    fflush(stdout);
    return g_failed ? 1 : 0;
}
