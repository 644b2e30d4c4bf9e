/*
 * test_cfgfile - options read from an INI file through an option table
 * (peers/cfgfile.h, swarmd --config): the keys that apply, the sections
 * passed over, and each refusal with its file:line.
 */
#include "sw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "cfgfile.h"
#include "tap.h"

struct opts {
    char peer[64];
    int threads;
    int exit_at_end;
    float ratio;
    char data[512];
};

#define T struct opts
static const struct sw_cfg_entry tab[] = {
    SW_CFG_STR(T, "peer", peer, "", "a peer"),
    SW_CFG_INT(T, "threads", threads, 0, 0, 1024, "threads"),
    SW_CFG_BOOL(T, "exit-at-end", exit_at_end, 1, "exit at the end"),
    SW_CFG_FLOAT(T, "ratio", ratio, 0.5, 0, 1, "a ratio"),
    SW_CFG_STR(T, "data", data, "default.txt", "data"),
};
#undef T

static const char *const cmds[] = {"bootstrap", "join", "keeper", NULL};

/* parse text as "f.conf" for the command "join" over the defaults */
static int
parse(struct opts *o, const char *text, char *why, size_t whylen)
{
    memset(o, 0, sizeof(*o));
    sw_cfg_defaults(tab, SW_ARRAY_SIZE(tab), o);
    why[0] = '\0';
    return sw_cfgfile_parse(tab, SW_ARRAY_SIZE(tab), o, "f.conf", text, strlen(text), "join",
                            cmds, why, whylen);
}

/* text is refused with exactly the message want */
static bool
refused(const char *text, const char *want)
{
    struct opts o;
    char why[512];
    int err = parse(&o, text, why, sizeof(why));

    if (err != -SW_ECONFIG || strcmp(why, want) != 0) {
        printf("# got %d '%s', want '%s'\n", err, why, want);
        return false;
    }
    return true;
}

int
main(void)
{
    struct opts o;
    char why[512], path[256], big[400];
    FILE *f;
    int err;

    tap_plan(16);

    err = parse(&o, "# a node\n; also a comment\npeer = tcp://10.0.0.1:7400\n\n"
                    "threads = 4   ; inline comment\nexit-at-end = no\nratio = 0.25\n",
                why, sizeof(why));
    tap_ok(err == 0 && !strcmp(o.peer, "tcp://10.0.0.1:7400") && o.threads == 4 &&
               o.exit_at_end == 0 && o.ratio == 0.25f,
           "keys outside any section apply, comments are skipped (%s)", why);
    tap_ok(!strcmp(o.data, "default.txt"), "a key the file does not name keeps its default");

    err = parse(&o, "threads = 2\n[keeper]\ndir = /ckpt\nthreads = 9\n[join]\npeer = tcp://h:1\n"
                    "[bootstrap]\nrun = x\n",
                why, sizeof(why));
    tap_ok(err == 0 && o.threads == 2 && !strcmp(o.peer, "tcp://h:1"),
           "[join] applies; [keeper] and [bootstrap] are passed over, their keys unread (%s)",
           why);

    err = parse(&o, "data = /srv/a b.txt\npeer =\n", why, sizeof(why));
    tap_ok(err == 0 && !strcmp(o.data, "/srv/a b.txt") && o.peer[0] == '\0',
           "a value keeps its inner blanks; an empty value is the empty string (%s)", why);

    tap_ok(refused("peer = x\n\ntreads = 4\n", "f.conf:3: unknown key 'treads'"),
           "an unknown key is refused with file:line");
    tap_ok(refused("threads = many\n",
                   "f.conf:1: 'threads' wants an integer in [0, 1024], got 'many'"),
           "a value that does not parse is refused with file:line and the range");
    tap_ok(refused("\n\nthreads = 2000\n",
                   "f.conf:3: 'threads' wants an integer in [0, 1024], got '2000'"),
           "a value out of range is refused");
    tap_ok(refused("exit-at-end = maybe\n",
                   "f.conf:1: 'exit-at-end' wants true or false, got 'maybe'"),
           "a bool that is not one is refused");
    tap_ok(refused("[run]\nsteps = 3\n", "f.conf:2: unknown section '[run]' (want [join])"),
           "a section that is no command is refused (a manifest given as --config)");
    tap_ok(refused("threads = 1\n[join]\nthreads = 2\n", "f.conf:3: key 'threads' given twice"),
           "a key given twice (at the top and in [join]) is refused");
    tap_ok(refused("peer = x\nthreads 4\n",
                   "f.conf:2: syntax error (want [section] or key = value)"),
           "a line without '=' is refused");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "data = ", 7);
    snprintf(why, sizeof(why), "f.conf:1: line longer than %d bytes", INI_MAX_LINE - 2);
    tap_ok(refused(big, why), "a line longer than inih reads whole is refused, not cut");
    err = sw_cfgfile_parse(tab, SW_ARRAY_SIZE(tab), &o, "f.conf", "peer = a\0b\n", 11, "join",
                           cmds, why, sizeof(why));
    tap_ok(err == -SW_ECONFIG && strstr(why, "NUL"), "a NUL byte is refused (%s)", why);

    snprintf(path, sizeof(path), "%s/test_cfgfile.%d.conf", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                              : "/tmp",
             (int)getpid());
    f = fopen(path, "w");
    if (f) {
        fputs("[join]\nthreads = 3\nratio = 1\n", f);
        fclose(f);
    }
    memset(&o, 0, sizeof(o));
    sw_cfg_defaults(tab, SW_ARRAY_SIZE(tab), &o);
    err = sw_cfgfile_load(tab, SW_ARRAY_SIZE(tab), &o, path, "join", cmds, why, sizeof(why));
    tap_ok(f && err == 0 && o.threads == 3 && o.ratio == 1.0f, "a file loads (%s)",
           err ? why : path);
    err = sw_cfgfile_load(tab, SW_ARRAY_SIZE(tab), &o, path, "keeper", NULL, why, sizeof(why));
    tap_ok(err == -SW_ECONFIG && strstr(why, ":2: unknown section '[join]' (want [keeper])"),
           "a section not listed to pass over is refused (%s)", why);
    unlink(path);
    err = sw_cfgfile_load(tab, SW_ARRAY_SIZE(tab), &o, path, "join", cmds, why, sizeof(why));
    tap_ok(err == -SW_ECONFIG && strstr(why, "cannot open '") && strstr(why, "No such file"),
           "a missing file is refused naming it (%s)", why);
    return tap_done();
}
