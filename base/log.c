#include "sw.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int sw_log_level = SW_LOG_INFO;
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

void
sw__log(int level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    if (level < 0 || level > SW_LOG_ERROR)
        level = SW_LOG_ERROR;
    if (log_prefix) {
        n = log_prefix(line, sizeof(line) / 2);
        if (n < 0)
            return;
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s: ", level_names[level]);
    } else {
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), log_prog, (int)getpid(),
                     level_names[level]);
        if (n < 0)
            return;
    }
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n] = '\n';
    line[n + 1] = '\0';
    pthread_mutex_lock(&log_lock);
    fputs(line, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
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
