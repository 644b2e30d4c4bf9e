#include "sw.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int sw_log_level = SW_LOG_INFO;
int sw_log_format = SW_LOG_TEXT;
static const char *log_prog = "swarm";
static sw_log_prefix_fn *log_prefix;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error", "none"};

void
sw_log_set_prog(const char *prog)
{
    const char *slash = strrchr(prog, '/');
    log_prog = slash ? slash + 1 : prog;
}

void
sw_log_set_prefix(sw_log_prefix_fn *fn)
{
    log_prefix = fn;
}

int
sw_log_parse_level(const char *s)
{
    for (int i = 0; i < (int)SW_ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            sw_log_level = i;
            return 0;
        }
    }
    return -SW_EINVAL;
}

int
sw_log_parse_format(const char *s)
{
    if (!strcmp(s, "text"))
        sw_log_format = SW_LOG_TEXT;
    else if (!strcmp(s, "json"))
        sw_log_format = SW_LOG_JSON;
    else
        return -SW_EINVAL;
    return 0;
}

/* Length of the UTF-8 sequence at s (1-4), or 0 when it is not one. */
static int
utf8_len(const unsigned char *s)
{
    int n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong three and four byte forms, surrogates, above U+10FFFF */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

size_t
sw_json_escape(char *dst, size_t len, const char *src)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    char e[8];
    int n;

    while (*s) {
        n = 1;
        if (*s == '"' || *s == '\\') {
            e[0] = '\\';
            e[1] = (char)*s;
            e[2] = '\0';
        } else if (*s < 0x20) {
            const char *c = *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : *s == '\r' ? "\\r" : NULL;
            if (c)
                snprintf(e, sizeof(e), "%s", c);
            else
                snprintf(e, sizeof(e), "\\u%04x", *s);
        } else if ((n = utf8_len(s)) == 0) {
            snprintf(e, sizeof(e), "\\ufffd");
            n = 1;
        } else {
            memcpy(e, s, (size_t)n);
            e[n] = '\0';
        }
        if (o + strlen(e) >= len)
            break;
        memcpy(dst + o, e, strlen(e));
        o += strlen(e);
        s += n;
    }
    dst[o] = '\0';
    return o;
}

const char *
sw_json_str(char *buf, size_t len, const char *src)
{
    size_t n;

    SW_ASSERT(len >= 3);
    buf[0] = '"';
    n = 1 + sw_json_escape(buf + 1, len - 2, src);
    buf[n] = '"';
    buf[n + 1] = '\0';
    return buf;
}

/* The line's start: time, program and pid (or the prefix function's text),
 * and the level; < 0 when the prefix function failed. */
static int
log_head(char *line, size_t len, int level)
{
    char pre[512], esc[1024];
    struct timeval tv;
    struct tm tm;
    int n;

    if (log_prefix) {
        if ((n = log_prefix(pre, sizeof(pre))) < 0)
            return -1;
        if (sw_log_format == SW_LOG_JSON) {
            sw_json_escape(esc, sizeof(esc), pre);
            return snprintf(line, len, "{\"at\":\"%s\",\"level\":\"%s\"", esc,
                            level_names[level]);
        }
        return snprintf(line, len, "%s%s: ", pre, level_names[level]);
    }
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(pre, sizeof(pre), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(tv.tv_usec / 1000));
    if (sw_log_format == SW_LOG_JSON) {
        sw_json_escape(esc, sizeof(esc), log_prog);
        return snprintf(line, len, "{\"ts\":\"%s\",\"prog\":\"%s\",\"pid\":%d,\"level\":\"%s\"",
                        pre, esc, (int)getpid(), level_names[level]);
    }
    return snprintf(line, len, "%s %s[%d] %s: ", pre, log_prog, (int)getpid(),
                    level_names[level]);
}

/* One line to stderr: the head, the event and its fields (json), the message. */
static void
log_line(int level, const char *name, const char *fields, const char *fmt, va_list ap)
{
    char line[8192], msg[2048];
    int n;

    if (level < 0 || level > SW_LOG_ERROR)
        level = SW_LOG_ERROR;
    if ((n = log_head(line, sizeof(line) / 4, level)) < 0)
        return;
    n = SW_MIN(n, (int)sizeof(line) / 4 - 1);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (sw_log_format == SW_LOG_JSON) {
        if (name)
            n += snprintf(line + n, sizeof(line) / 2 - (size_t)n, ",\"event\":\"%s\"%s%s", name,
                          fields && fields[0] ? "," : "", fields ? fields : "");
        n = SW_MIN(n, (int)sizeof(line) / 2 - 1);
        n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"msg\":\"");
        n += (int)sw_json_escape(line + n, sizeof(line) - (size_t)n - 3, msg);
        snprintf(line + n, sizeof(line) - (size_t)n, "\"}\n");
    } else {
        snprintf(line + n, sizeof(line) - (size_t)n, "%s\n", msg);
    }
    pthread_mutex_lock(&log_lock);
    fputs(line, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void
sw__log(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_line(level, NULL, NULL, fmt, ap);
    va_end(ap);
}

void
sw__log_event(int level, const char *name, const char *fields, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_line(level, name, fields, fmt, ap);
    va_end(ap);
}

void
sw_log_out(const char *name, const char *fields, const char *fmt, ...)
{
    va_list ap;

    if (sw_log_format == SW_LOG_JSON) {
        printf("{\"event\":\"%s\"%s%s}\n", name, fields && fields[0] ? "," : "",
               fields ? fields : "");
    } else {
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
    }
    fflush(stdout);
}

int
sw__ratelimit_ok(struct sw_ratelimit *rl, uint64_t interval_ms, uint64_t *suppressed)
{
    uint64_t now = sw_now_ms();
    int ok = 0;

    pthread_mutex_lock(&log_lock);
    if (rl->last_ms == 0 || now - rl->last_ms >= interval_ms) {
        *suppressed = rl->suppressed;
        rl->suppressed = 0;
        rl->last_ms = now ? now : 1;
        ok = 1;
    } else {
        rl->suppressed++;
    }
    pthread_mutex_unlock(&log_lock);
    return ok;
}

uint64_t
sw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double
sw_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
