/* Minimal TAP producer for imago's test executables (meson test protocol 'tap').
 *
 *   int main(void) { tap_plan(2); ok(1 + 1 == 2, "adds"); ...; return tap_done(); }
 *
 * tap_skip_all(reason) prints "1..0 # SKIP reason" and exits 0, which meson's
 * TAP protocol shows as a skipped test with its reason (a TAP test exiting 77
 * is an ERROR for meson; only exitcode-protocol tests skip with 77). Not thread-safe: call from the main thread.
 */
#ifndef IMAGO_TAP_H
#define IMAGO_TAP_H

#include <stdarg.h>

void tap_plan(int n);                 /* optional; tap_done() prints the plan if omitted */
int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
void tap_diag(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void tap_skip(int n, const char *reason); /* marks n tests as skipped */
void tap_skip_all(const char *reason) __attribute__((noreturn));
void tap_bail(const char *reason) __attribute__((noreturn));
int tap_done(void); /* prints the plan when needed; returns the exit status */

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                           \
    do {                                                                                 \
        long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);                 \
        if (!tap_ok(tap_g_ == tap_w_, __FILE__, __LINE__, __VA_ARGS__))                  \
            tap_diag("  got %lld, want %lld", tap_g_, tap_w_);                           \
    } while (0)
#define is_str(got, want, ...)                                                           \
    do {                                                                                 \
        const char *tap_g_ = (got), *tap_w_ = (want);                                    \
        int tap_eq_ = (tap_g_ && tap_w_) ? strcmp(tap_g_, tap_w_) == 0 : tap_g_ == tap_w_; \
        if (!tap_ok(tap_eq_, __FILE__, __LINE__, __VA_ARGS__))                           \
            tap_diag("  got \"%s\", want \"%s\"", tap_g_ ? tap_g_ : "(null)",            \
                     tap_w_ ? tap_w_ : "(null)");                                        \
    } while (0)
#define is_close(got, want, tol, ...)                                                    \
    do {                                                                                 \
        double tap_g_ = (double)(got), tap_w_ = (double)(want), tap_t_ = (double)(tol);  \
        double tap_d_ = tap_g_ > tap_w_ ? tap_g_ - tap_w_ : tap_w_ - tap_g_;             \
        if (!tap_ok(tap_d_ <= tap_t_, __FILE__, __LINE__, __VA_ARGS__))                  \
            tap_diag("  got %.9g, want %.9g (tolerance %g)", tap_g_, tap_w_, tap_t_);    \
    } while (0)

#endif
