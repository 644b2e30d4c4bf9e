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
 *
 * In json format (sw_log_format, swarmd --log-format json) each line is one
 * JSON object instead, for scripts and tests:
 *   {"ts":"2026-11-22T20:05:33.123Z","prog":"swarmd","pid":1234,"level":"warn",
 *    "msg":"cannot connect to 'tcp://...': Connection refused"}
 * (with a prefix function: "at", its text, in place of ts, prog and pid).
 * Events, the lines scripts wait for, add a stable "event" name and fields
 * of their own before "msg" (sw_log_event); in text format they are plain
 * lines.  sw_log_out writes the same two forms on stdout, for the lines that
 * are a program's output (step lines, endpoints).
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

enum sw_log_format { SW_LOG_TEXT = 0, SW_LOG_JSON = 1 };
extern int sw_log_format;
/* Parse "text|json" into sw_log_format; 0 or -SW_EINVAL. */
int sw_log_parse_format(const char *s);

/* SRC as the inside of a JSON string (quotes, backslashes and control
 * characters escaped; bytes that are not UTF-8 become U+FFFD) into DST of
 * LEN >= 1 bytes, always NUL-terminated; what does not fit whole is left
 * out.  Returns the length written. */
size_t sw_json_escape(char *dst, size_t len, const char *src);
/* SRC quoted and escaped into BUF (LEN >= 3): a JSON string, for the fields
 * of sw_log_event and sw_log_out.  Returns BUF. */
const char *sw_json_str(char *buf, size_t len, const char *src);

void sw__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sw_log(level, ...)                                                     \
    do {                                                                       \
        if ((level) >= sw_log_level)                                           \
            sw__log((level), __VA_ARGS__);                                     \
    } while (0)

/*
 * An event: in text format the message, as sw_log; in json format the
 * object also has "event": NAME (lowercase, '_' between words) and FIELDS, a
 * preformatted list of JSON members without braces ("\"stage\":2,\"ep\":" and
 * a sw_json_str; NULL or "": none), before "msg".
 */
void sw__log_event(int level, const char *name, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define sw_log_event(level, name, fields, ...)                                 \
    do {                                                                       \
        if ((level) >= sw_log_level)                                           \
            sw__log_event((level), (name), (fields), __VA_ARGS__);             \
    } while (0)

/* A line of output on stdout, flushed: in text format the message; in json
 * format {"event":NAME,FIELDS}. */
void sw_log_out(const char *name, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
