/*
 * tap.h - a tiny TAP producer for swarm's C tests (header only).
 *
 *   int main(void) {
 *       tap_plan(3);
 *       tap_ok(x == 1, "x is one");
 *       tap_close_f(got, want, 1e-5, "loss matches");   prints maxdiff
 *       return tap_done();
 *   }
 *
 * tap_skip_all("no CUDA device") prints "1..0 # SKIP no CUDA device".
 */
#ifndef SW_TAP_H
#define SW_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n_, tap_failed_, tap_planned_ = -1;

static inline void
tap_plan(int n)
{
    tap_planned_ = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static inline int
tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fflush(stdout);
    return 0;
}

__attribute__((format(printf, 2, 3))) static inline int
tap_ok(int cond, const char *fmt, ...)
{
    va_list ap;

    tap_n_++;
    printf("%s %d - ", cond ? "ok" : "not ok", tap_n_);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!cond)
        tap_failed_++;
    return cond;
}

__attribute__((format(printf, 1, 2))) static inline void
tap_diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static inline void
tap_skip(const char *why)
{
    tap_n_++;
    printf("ok %d # SKIP %s\n", tap_n_, why);
    fflush(stdout);
}

/* ok when |got - want| <= tol * max(1, |want|) */
static inline int
tap_close(double got, double want, double tol, const char *what)
{
    double d = fabs(got - want), s = fabs(want) > 1 ? fabs(want) : 1;
    return tap_ok(d <= tol * s, "%s: got %.9g want %.9g diff %.3g tol %.3g", what, got, want, d,
                  tol);
}

static inline int
tap_done(void)
{
    if (tap_planned_ < 0)
        printf("1..%d\n", tap_n_);
    else if (tap_planned_ != tap_n_)
        printf("# planned %d tests but ran %d\n", tap_planned_, tap_n_);
    fflush(stdout);
    return (tap_failed_ || (tap_planned_ >= 0 && tap_planned_ != tap_n_)) ? 1 : 0;
}

#endif
