/* Leveled logging to one sink, as text lines or JSON lines. A mutex keeps the
 * lines of concurrent threads whole. */
#include "common.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

static struct {
    imago_log_level min;
    imago_log_format format;
    FILE *out;
    pthread_mutex_t lock;
} g_log = {IMAGO_LOG_INFO, IMAGO_LOG_TEXT, NULL, PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void imago_log_setup(imago_log_level min_level, imago_log_format format, FILE *out)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.min = min_level;
    g_log.format = format;
    g_log.out = out;
    pthread_mutex_unlock(&g_log.lock);
}

int imago_log_level_parse(const char *s, imago_log_level *out)
{
    for (int i = 0; i <= IMAGO_LOG_OFF; i++) {
        if (s && strcmp(s, level_names[i]) == 0) {
            *out = (imago_log_level)i;
            return 0;
        }
    }
    return IMAGO_ERR_INVALID;
}

int imago_log_enabled(imago_log_level level)
{
    return level >= g_log.min && level < IMAGO_LOG_OFF;
}

/* Writes s as the inside of a JSON string. */
static void json_escape(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
}

void imago_logv(imago_log_level level, const char *module, const char *fmt, va_list ap)
{
    if (!imago_log_enabled(level))
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40];
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000L);

    pthread_mutex_lock(&g_log.lock);
    FILE *out = g_log.out ? g_log.out : stderr;
    if (g_log.format == IMAGO_LOG_JSON) {
        fprintf(out, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"", stamp, level_names[level]);
        json_escape(out, module ? module : "");
        fputs("\",\"msg\":\"", out);
        json_escape(out, msg);
        fputs("\"}\n", out);
    } else {
        fprintf(out, "%s %-5s %s: %s\n", stamp, level_names[level], module ? module : "-", msg);
    }
    fflush(out);
    pthread_mutex_unlock(&g_log.lock);
}

void imago_log(imago_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imago_logv(level, module, fmt, ap);
    va_end(ap);
}
