/*
 * log.h - leveled, printf-checked logging to stderr.
 *
 * Lines look like "2026-11-22T20:05:33.123Z swarmd[1234] warn: cannot connect
 * to 'tcp://...': Connection refused": lowercase, no final period, one line
 * per call (the line is written with one fputs under a lock, so threads never
 * interleave inside it).  The level is checked before any formatting.
 * SW_LOG_RATELIMITED drops repeats of one call site beyond a given interval
 * and reports how many it dropped: use it for anything a remote peer can
 * trigger.
 */
#ifndef SW_LOG_H
#define SW_LOG_H

#include <stddef.h>
#include <stdint.h>

enum sw_log_level {
    SW_LOG_DEBUG = 0,
    SW_LOG_INFO = 1,
    SW_LOG_WARN = 2,
    SW_LOG_ERROR = 3,
    SW_LOG_NONE = 4,
};

extern int sw_log_level;

/* Name shown in each line (default "swarm"); the string must outlive logging. */
void sw_log_set_prog(const char *prog);
/* Lines begin with what fn writes (its length, < 0 on error) instead of the
 * wall-clock time and the program: the swarm simulator's clock and node.
 * NULL: the default. */
typedef int sw_log_prefix_fn(char *buf, size_t len);
void sw_log_set_prefix(sw_log_prefix_fn *fn);
/* Parse "debug|info|warn|error|none"; 0 or -SW_EINVAL. */
int sw_log_parse_level(const char *s);

void sw__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sw_log(level, ...)                                                     \
    do {                                                                       \
        if ((level) >= sw_log_level)                                           \
            sw__log((level), __VA_ARGS__);                                     \
    } while (0)

/* Rate limiting state of one call site. */
struct sw_ratelimit {
    uint64_t last_ms;
    uint64_t suppressed;
};

/* True when a line may be written now; counts the suppressed ones. */
int sw__ratelimit_ok(struct sw_ratelimit *rl, uint64_t interval_ms, uint64_t *suppressed);

#define SW_LOG_RATELIMITED(level, interval_ms, fmt, ...)                       \
    do {                                                                       \
        static struct sw_ratelimit sw__rl_;                                    \
        uint64_t sw__supp_;                                                    \
        if ((level) >= sw_log_level && sw__ratelimit_ok(&sw__rl_, (interval_ms), &sw__supp_)) { \
            if (sw__supp_)                                                     \
                sw__log((level), fmt " (%llu similar suppressed)", ##__VA_ARGS__, \
                        (unsigned long long)sw__supp_);                        \
            else                                                               \
                sw__log((level), fmt, ##__VA_ARGS__);                          \
        }                                                                      \
    } while (0)

/* Monotonic milliseconds, for rate limits and timers. */
uint64_t sw_now_ms(void);
/* Monotonic seconds as a double. */
double sw_now_s(void);

#endif
