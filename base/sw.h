/*
 * sw.h - included first by every .c file of swarm.
 *
 * Wraps config.h and pulls in the three things every module uses: error codes
 * (err.h), logging (log.h) and allocation (alloc.h).  It lives in base/, below
 * every layer: nothing in base/ includes another folder, so kernels/, src/,
 * net/ and peers/ may all include it.
 */
#ifndef SW_SW_H
#define SW_SW_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_WARN_UNUSED __attribute__((warn_unused_result))
#define SW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define SW_NORETURN __attribute__((noreturn))
#define SW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SW_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Programmer errors only: never on input from files or the network. */
#define SW_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond))                                                           \
            sw__assert_fail(#cond, __FILE__, __LINE__, __func__);              \
    } while (0)

SW_NORETURN void sw__assert_fail(const char *expr, const char *file, int line, const char *func);

#include "err.h"
#include "log.h"
#include "alloc.h"

#endif
