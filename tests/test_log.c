/*
 * test_log.c - base/log's JSON form: sw_json_escape and sw_json_str (quotes,
 * backslashes, control characters, UTF-8 kept, bytes that are not UTF-8
 * replaced, truncation that never splits an escape), and one line of each
 * kind in json format (sw_log, sw_log_event, sw_log_out), read back from a
 * temporary file in place of stderr and stdout.
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

static int
escapes_to(const char *in, const char *want)
{
    char buf[128];

    sw_json_escape(buf, sizeof(buf), in);
    if (strcmp(buf, want) != 0)
        tap_diag("escape: got '%s', want '%s'", buf, want);
    return strcmp(buf, want) == 0;
}

/* The lines FN writes to the stream F (stderr or stdout), into buf. */
static void
capture(FILE *f, void (*fn)(void), char *buf, size_t len)
{
    FILE *tmp = tmpfile();
    int fd = fileno(f), saved = dup(fd);
    size_t n;

    fflush(f);
    dup2(fileno(tmp), fd);
    fn();
    fflush(f);
    dup2(saved, fd);
    close(saved);
    rewind(tmp);
    n = fread(buf, 1, len - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
}

static void
write_log(void)
{
    sw_log(SW_LOG_WARN, "cannot open '%s': %s", "a\"b\\c\n", "gone");
}

static void
write_event(void)
{
    char q[64];
    char f[128];

    snprintf(f, sizeof(f), "\"stage\":%d,\"ep\":%s", 2, sw_json_str(q, sizeof(q), "tcp://x:1"));
    sw_log_event(SW_LOG_INFO, "chose_stage", f, "stage auto: chose stage %d", 2);
    sw_log_event(SW_LOG_INFO, "run_finished", NULL, "run finished");
}

static void
write_out(void)
{
    sw_log_out("listening", "\"ep\":\"tcp://x:1\"", "listening %s", "tcp://x:1");
}

int
main(void)
{
    char buf[4096], small[8];
    size_t n;

    tap_plan(14);
    tap_ok(escapes_to("plain text", "plain text"), "plain text is kept");
    tap_ok(escapes_to("say \"hi\" \\o/", "say \\\"hi\\\" \\\\o/"), "quotes and backslashes");
    tap_ok(escapes_to("a\nb\tc\rd\x01\x1f", "a\\nb\\tc\\rd\\u0001\\u001f"),
           "newline, tab, return and other control characters");
    tap_ok(escapes_to("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac "
                      "\xf0\x9f\x98\x80"), "UTF-8 of two, three and four bytes is kept");
    tap_ok(escapes_to("a\xff" "b\xc3" "c\xc0\xaf" "d\xed\xa0\x80", "a\\ufffdb\\ufffdc\\ufffd\\ufffdd"
                      "\\ufffd\\ufffd\\ufffd"), "bytes that are not UTF-8 become U+FFFD");
    n = sw_json_escape(small, sizeof(small), "abcde\"f");
    tap_ok(n == 7 && !strcmp(small, "abcde\\\""), "truncation keeps an escape whole (%s)", small);
    n = sw_json_escape(small, sizeof(small), "abcdef\"");
    tap_ok(n == 6 && !strcmp(small, "abcdef"), "an escape that does not fit is left out (%s)",
           small);
    tap_ok(!strcmp(sw_json_str(buf, sizeof(buf), "x\"y"), "\"x\\\"y\""), "sw_json_str quotes");

    tap_ok(sw_log_parse_format("yaml") < 0 && sw_log_parse_format("json") == 0 &&
           sw_log_format == SW_LOG_JSON, "--log-format: json accepted, yaml refused");
    sw_log_set_prog("test_log");
    capture(stderr, write_log, buf, sizeof(buf));
    tap_ok(!strncmp(buf, "{\"ts\":\"", 7) && strstr(buf, "\",\"prog\":\"test_log\",\"pid\":") &&
           strstr(buf, ",\"level\":\"warn\",\"msg\":\"cannot open 'a\\\"b\\\\c\\n': gone\"}\n") &&
           !strchr(buf, '\n')[1], "a log line is one JSON object: %.*s", (int)strcspn(buf, "\n"),
           buf);
    capture(stderr, write_event, buf, sizeof(buf));
    tap_ok(strstr(buf, ",\"level\":\"info\",\"event\":\"chose_stage\",\"stage\":2,"
                       "\"ep\":\"tcp://x:1\",\"msg\":\"stage auto: chose stage 2\"}\n") != NULL,
           "an event: its name and fields before the message");
    tap_ok(strstr(buf, ",\"event\":\"run_finished\",\"msg\":\"run finished\"}\n") != NULL,
           "an event without fields");
    capture(stdout, write_out, buf, sizeof(buf));
    tap_ok(!strcmp(buf, "{\"event\":\"listening\",\"ep\":\"tcp://x:1\"}\n"), "stdout: %.*s",
           (int)strcspn(buf, "\n"), buf);
    sw_log_parse_format("text");
    capture(stdout, write_out, buf, sizeof(buf));
    tap_ok(!strcmp(buf, "listening tcp://x:1\n"), "stdout, text format: the message");
    return tap_done();
}
