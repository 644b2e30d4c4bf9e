/*
 * test_data.c - token data: sources, refusals, splits, seeded sampling,
 * cursor save/restore, fixed evaluation windows.
 */
#include "sw.h"

#include "data.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/sw-test-data-XXXXXX";

static const char *
p(const char *name)
{
    static char buf[4][1024];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static void
put(const char *name, const void *buf, size_t len)
{
    FILE *f = fopen(p(name), "wb");

    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(name);
        exit(99);
    }
}

/* An llm.c token file written by hand: header fields, then ntok tokens, then extra bytes. */
static void
put_tokens(const char *name, int32_t magic, int32_t version, int32_t count, const uint16_t *tok,
           size_t ntok, size_t extra)
{
    static uint8_t buf[1 << 16];
    int32_t h[256] = {magic, version, count};
    size_t n = 0;

    memcpy(buf, h, sizeof(h));
    n += sizeof(h);
    memcpy(buf + n, tok, ntok * 2);
    n += ntok * 2;
    memset(buf + n, 0x41, extra);
    n += extra;
    put(name, buf, n);
}

static char msg[4096];

/* Open with stderr captured into msg. */
static int
open_capture(struct sw_data *d, const char *paths, int vocab)
{
    char tmpl[] = "/tmp/sw-test-data-log-XXXXXX";
    int fd = mkstemp(tmpl), saved, rc;
    ssize_t n;

    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    rc = sw_data_open(d, paths, vocab, 0.1, 1);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, msg, sizeof(msg) - 1, 0);
    msg[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    fputs(msg, stderr); /* still shown in the test log */
    return rc;
}

static void
refused(const char *what, const char *paths, const char *named, int vocab, int want)
{
    struct sw_data d;
    int rc = open_capture(&d, paths, vocab);

    tap_ok(rc == want && strstr(msg, named) != NULL, "refused: %s (%s, message names '%s')", what,
           sw_err_name(rc), strrchr(named, '/') ? strrchr(named, '/') + 1 : named);
    if (rc == 0)
        sw_data_release(&d);
}

static void
test_sources(void)
{
    static uint16_t tok[1000];
    struct sw_data d;
    bool ok;
    int rc;

    put("hello.txt", "hello world\n", 12);
    rc = sw_data_open(&d, p("hello.txt"), 256, 0.0, 1);
    tap_ok(rc == 0 && d.n == 12 && d.n_train == 12 && d.nfiles == 1 && d.tokens[0] == 'h' &&
           d.tokens[11] == '\n', "text file: one token per byte");
    if (rc == 0)
        sw_data_release(&d);

    for (int i = 0; i < 1000; i++)
        tok[i] = (uint16_t)((i * 37) % 300);
    put_tokens("t.bin", SW_DATA_MAGIC, 1, 1000, tok, 1000, 0);
    rc = sw_data_open(&d, p("t.bin"), 300, 0.0, 1);
    tap_ok(rc == 0 && d.n == 1000 && memcmp(d.tokens, tok, sizeof(tok)) == 0,
           "llm.c token file (hand-written) loads");
    if (rc == 0)
        sw_data_release(&d);
    rc = sw_data_write_tokens(p("w.tok"), tok, 1000);
    rc = rc ? rc : sw_data_open(&d, p("w.tok"), 300, 0.0, 1);
    tap_ok(rc == 0 && d.n == 1000 && memcmp(d.tokens, tok, sizeof(tok)) == 0,
           "sw_data_write_tokens round trip, recognised by magic without .bin");
    if (rc == 0)
        sw_data_release(&d);
    {
        struct stat sb;
        tap_ok(stat(p("w.tok"), &sb) == 0 && sb.st_size == 1024 + 2000,
               "written token file is 1024 + 2 * count bytes");
    }

    /* a folder: sorted, recursive, links, dot-files and empty files skipped */
    mkdir(p("corpus"), 0755);
    mkdir(p("corpus/sub"), 0755);
    put("corpus/b.txt", "BB", 2);
    put("corpus/a.txt", "A", 1);
    put("corpus/sub/c.txt", "CCC", 3);
    put("corpus/.hidden", "H", 1);
    put("corpus/e.txt", "", 0);
    put_tokens("corpus/z.bin", SW_DATA_MAGIC, 1, 2, (const uint16_t[]){7, 9}, 2, 0);
    if (symlink("a.txt", p("corpus/l.txt")) != 0)
        perror("symlink");
    rc = sw_data_open(&d, p("corpus"), 256, 0.0, 1);
    ok = rc == 0 && d.n == 8 && d.nfiles == 4 && memcmp(d.tokens,
         (const uint16_t[]){'A', 'B', 'B', 'C', 'C', 'C', 7, 9}, 16) == 0;
    tap_ok(ok, "folder: a.txt b.txt sub/c.txt z.bin in order; link, dot-file, empty skipped");
    if (rc == 0)
        sw_data_release(&d);

    /* a list of paths */
    {
        char list[3000];
        snprintf(list, sizeof(list), "%s,%s,%s", p("hello.txt"), p("corpus/sub"),
                 p("corpus/a.txt"));
        rc = sw_data_open(&d, list, 256, 0.0, 1);
        tap_ok(rc == 0 && d.n == 16 && d.nfiles == 3 && d.tokens[12] == 'C' &&
               d.tokens[15] == 'A', "comma-separated list concatenated in order");
        if (rc == 0)
            sw_data_release(&d);
    }
    mkdir(p("with,comma"), 0755);
    put("with,comma/x.txt", "xy", 2);
    rc = sw_data_open(&d, p("with,comma"), 256, 0.0, 1);
    tap_ok(rc == 0 && d.n == 2, "an existing path with a comma is one path");
    if (rc == 0)
        sw_data_release(&d);

    if (access("/usr/share/games/fortunes/fortunes", R_OK) == 0) {
        double t0 = sw_now_s();

        rc = sw_data_open(&d, "/usr/share/games/fortunes", 256, 0.1, 1);
        tap_ok(rc == 0 && d.n > 1000000 && d.n_train + d.n / 10 == d.n,
               "Debian fortunes folder loads (%zu tokens, %d files, %.3f s)", d.n, d.nfiles,
               sw_now_s() - t0);
        if (rc == 0)
            sw_data_release(&d);
    } else {
        tap_skip("no /usr/share/games/fortunes");
    }
}

static void
test_refusals(void)
{
    static uint16_t tok[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 299};
    struct sw_data d;
    int rc;

    refused("missing file", p("nope.txt"), p("nope.txt"), 256, -SW_ENOENT);
    put("empty.txt", "", 0);
    refused("empty file", p("empty.txt"), p("empty.txt"), 256, -SW_EFORMAT);
    mkdir(p("emptydir"), 0755);
    refused("empty folder", p("emptydir"), p("emptydir"), 256, -SW_EFORMAT);
    mkdir(p("hollow"), 0755);
    mkdir(p("hollow/sub"), 0755);
    put("hollow/e", "", 0);
    put("hollow/.x", "x", 1);
    refused("folder of empty things", p("hollow"), p("hollow"), 256, -SW_EFORMAT);
    {
        static const uint8_t head[100] = {0x48, 0xd5, 0x34, 0x01, 1}; /* magic, version 1 */
        put("short.bin", head, sizeof(head));
    }
    refused("truncated header", p("short.bin"), p("short.bin"), 256, -SW_EFORMAT);
    put_tokens("magic.bin", 20240521, 1, 16, tok, 16, 0);
    refused("wrong magic", p("magic.bin"), p("magic.bin"), 65536, -SW_EFORMAT);
    put_tokens("version.bin", SW_DATA_MAGIC, 2, 16, tok, 16, 0);
    refused("wrong version", p("version.bin"), p("version.bin"), 65536, -SW_EFORMAT);
    put_tokens("zero.bin", SW_DATA_MAGIC, 1, 0, tok, 0, 0);
    refused("count 0", p("zero.bin"), p("zero.bin"), 65536, -SW_EFORMAT);
    put_tokens("neg.bin", SW_DATA_MAGIC, 1, -5, tok, 16, 0);
    refused("negative count", p("neg.bin"), p("neg.bin"), 65536, -SW_EFORMAT);
    put_tokens("beyond.bin", SW_DATA_MAGIC, 1, 17, tok, 16, 0);
    refused("count beyond the file", p("beyond.bin"), p("beyond.bin"), 65536, -SW_EFORMAT);
    put_tokens("half.bin", SW_DATA_MAGIC, 1, 16, tok, 15, 1);
    refused("count beyond the file by one byte", p("half.bin"), p("half.bin"), 65536,
            -SW_EFORMAT);
    put_tokens("trail.bin", SW_DATA_MAGIC, 1, 16, tok, 16, 1);
    refused("one trailing byte", p("trail.bin"), p("trail.bin"), 65536, -SW_EFORMAT);
    put_tokens("trail2.bin", SW_DATA_MAGIC, 1, 15, tok, 16, 0);
    refused("a trailing token", p("trail2.bin"), p("trail2.bin"), 65536, -SW_EFORMAT);
    put_tokens("vocab.bin", SW_DATA_MAGIC, 1, 16, tok, 16, 0);
    refused("token >= vocab", p("vocab.bin"), p("vocab.bin"), 299, -SW_ERANGE);
    put("upper.txt", "abcz", 4);
    refused("text byte >= vocab", p("upper.txt"), p("upper.txt"), 100, -SW_ERANGE);
    put("one.txt", "x", 1);
    refused("a single token", p("one.txt"), p("one.txt"), 256, -SW_EFORMAT);
    mkdir(p("mixed"), 0755);
    put("mixed/a.txt", "fine", 4);
    put_tokens("mixed/b.bin", 20240521, 1, 16, tok, 16, 0);
    refused("a bad file inside a folder", p("mixed"), p("mixed/b.bin"), 65536, -SW_EFORMAT);
    if (geteuid() != 0) {
        put("secret.txt", "secret", 6);
        chmod(p("secret.txt"), 0);
        refused("unreadable file", p("secret.txt"), p("secret.txt"), 256, -EACCES);
    } else {
        tap_skip("running as root: cannot make an unreadable file");
    }
    put("ok.txt", "some text", 9);
    rc = sw_data_open(&d, p("ok.txt"), 0, 0.1, 1);
    tap_ok(rc == -SW_EINVAL, "vocab 0 refused");
    rc = sw_data_open(&d, p("ok.txt"), 65537, 0.1, 1);
    tap_ok(rc == -SW_EINVAL, "vocab 65537 refused");
    rc = sw_data_open(&d, p("ok.txt"), 256, 1.0, 1);
    tap_ok(rc == -SW_EINVAL, "val_frac 1 refused");
    rc = sw_data_open(&d, p("ok.txt"), 256, -0.1, 1);
    tap_ok(rc == -SW_EINVAL, "val_frac -0.1 refused");
}

enum { N = 1000, B = 4, T = 16 };

static bool
batch_valid(const struct sw_data *d, const int32_t *in, const int32_t *tg)
{
    for (int b = 0; b < B; b++) {
        int32_t s = in[b * T];

        if (s < 0 || (size_t)s + T >= d->n_train) /* window stays inside train */
            return false;
        for (int t = 0; t < T; t++)
            if (in[b * T + t] != s + t || tg[b * T + t] != s + t + 1)
                return false;
    }
    return true;
}

static void
test_sampling(void)
{
    static uint16_t pos[N];
    int32_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    int32_t rec_in[4][B * T], rec_tg[4][B * T];
    static int32_t big_in[1000], big_tg[1000];
    struct sw_data d, e;
    struct sw_data_cursor c;
    bool ok = true, differ = false;
    int rc;

    for (int i = 0; i < N; i++)
        pos[i] = (uint16_t)i; /* token = position: windows are easy to check */
    rc = sw_data_init_tokens(&d, pos, N, 65536, 0.1, 42);
    rc = rc ? rc : sw_data_init_tokens(&e, pos, N, 65536, 0.1, 42);
    tap_ok(rc == 0, "two streams from memory, same seed");
    if (rc < 0)
        exit(1);
    tap_ok(d.n_train == 900 && sw_data_split_len(&d, SW_DATA_VAL) == 100 &&
           sw_data_split_len(&d, SW_DATA_ALL) == 1000, "val_frac 0.1 of 1000: 900 train, 100 val");
    tap_ok(sw_data_nwindows(&d, SW_DATA_TRAIN, T) == 899 / T &&
           sw_data_nwindows(&d, SW_DATA_VAL, T) == 99 / T &&
           sw_data_val_nbatches(&d, B, T) == (99 / T) / B, "window and batch counts");

    for (int i = 0; i < 20; i++) {
        rc = sw_data_next_batch(&d, in1, tg1, B, T);
        rc = rc ? rc : sw_data_next_batch(&e, in2, tg2, B, T);
        ok = ok && rc == 0 && memcmp(in1, in2, sizeof(in1)) == 0 &&
             memcmp(tg1, tg2, sizeof(tg1)) == 0 && batch_valid(&d, in1, tg1);
    }
    tap_ok(ok, "same seed -> same batches; windows contiguous, targets shifted, inside train");
    sw_data_seed(&e, 43);
    sw_data_seed(&d, 42);
    for (int i = 0; i < 5; i++) {
        rc = sw_data_next_batch(&d, in1, tg1, B, T);
        rc = rc ? rc : sw_data_next_batch(&e, in2, tg2, B, T);
        differ = differ || memcmp(in1, in2, sizeof(in1)) != 0;
    }
    tap_ok(rc == 0 && differ, "another seed -> other batches");

    /* cursor save / restore */
    sw_data_cursor_get(&d, &c);
    tap_ok(c.drawn == 5 * B, "cursor counts windows drawn (%llu)", (unsigned long long)c.drawn);
    for (int i = 0; i < 4; i++)
        rc |= sw_data_next_batch(&d, rec_in[i], rec_tg[i], B, T);
    sw_data_seed(&e, 7);
    sw_data_cursor_set(&e, &c);
    ok = rc == 0;
    for (int i = 0; i < 4; i++) {
        rc = sw_data_next_batch(&e, in2, tg2, B, T);
        ok = ok && rc == 0 && memcmp(rec_in[i], in2, sizeof(in2)) == 0 &&
             memcmp(rec_tg[i], tg2, sizeof(tg2)) == 0;
    }
    tap_ok(ok, "a restored cursor reproduces the stream on another handle");

    /* fixed validation windows and whole-stream windows */
    rc = sw_data_val_batch(&d, 1, in1, tg1, 2, T);
    ok = rc == 0;
    for (int i = 0; ok && i < 2 * T; i++)
        ok = in1[i] == 900 + 2 * T + i && tg1[i] == 900 + 2 * T + i + 1;
    tap_ok(ok, "validation batch 1 of B=2 = val windows 2..3, contiguous from token 932");
    rc = sw_data_val_batch(&d, sw_data_val_nbatches(&d, B, T), in1, tg1, B, T);
    tap_ok(rc == -SW_ERANGE, "validation batch past the end refused");
    rc = sw_data_window(&d, SW_DATA_ALL, 3, in1, tg1, 2, T);
    ok = rc == 0;
    for (int i = 0; ok && i < 2 * T; i++)
        ok = in1[i] == 3 * T + i && tg1[i] == 3 * T + i + 1;
    tap_ok(ok, "whole-stream window b = tokens [b*T, b*T+T), targets shifted by one");
    rc = sw_data_window(&d, SW_DATA_ALL, 0, big_in, big_tg, 1, 999);
    tap_ok(rc == 0 && big_tg[998] == 999, "one window of n-1 tokens fits");
    rc = sw_data_window(&d, SW_DATA_ALL, 0, big_in, big_tg, 1, 1000);
    tap_ok(rc == -SW_ERANGE, "a window of n tokens does not (needs n+1)");
    sw_data_release(&e);

    /* too short a training split: refused, cursor untouched */
    sw_data_cursor_get(&d, &c);
    {
        struct sw_data_cursor c2;

        rc = sw_data_next_batch(&d, big_in, big_tg, 1, 900);
        sw_data_cursor_get(&d, &c2);
        tap_ok(rc == -SW_ERANGE && memcmp(&c, &c2, sizeof(c)) == 0,
               "T+1 > train tokens refused, cursor unchanged");
        rc = sw_data_next_batch(&d, big_in, big_tg, 1, 899);
        tap_ok(rc == 0 && big_in[0] == 0 && big_tg[898] == 899, "T+1 == train tokens: start 0");
    }
    sw_data_release(&d);

    /* every start is drawn, roughly uniformly */
    {
        int counts[16] = {0}, lo = 1 << 30;
        int32_t in[4], tg[4];

        rc = sw_data_init_tokens(&d, pos, 20, 65536, 0.0, 5);
        for (int i = 0; rc == 0 && i < 1600; i++) {
            rc = sw_data_next_batch(&d, in, tg, 1, 4);
            counts[in[0]]++;
        }
        for (int i = 0; i < 16; i++)
            lo = SW_MIN(lo, counts[i]);
        tap_ok(rc == 0 && lo >= 60, "all 16 starts drawn from 20 tokens, T=4 (min %d of ~100)",
               lo);
        sw_data_release(&d);
    }
}

static void
rm_rf(const char *path)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", path);
}

int
main(void)
{
    if (!mkdtemp(dir))
        return 99;
    test_sources();
    test_refusals();
    test_sampling();
    rm_rf(dir);
    return tap_done();
}
