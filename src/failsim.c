/*
 * failsim.c - the failure schedule (see failsim.h).
 */
#include "sw.h"

#include "rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failsim.h"

double
sw_failsim_prob(double rate, double step_seconds)
{
    if (rate <= 0)
        return 0;
    if (rate >= 1)
        return 1;
    return -expm1(log1p(-rate) * step_seconds / 3600.0);
}

int
sw_failsim_init(struct sw_failsim *fs, int S, double rate, double step_seconds, uint64_t seed)
{
    memset(fs, 0, sizeof(*fs));
    if (!(rate >= 0 && rate <= 1) || !(step_seconds > 0) || S < 1)
        return -SW_EINVAL;
    fs->S = S;
    fs->rate = rate;
    fs->step_seconds = step_seconds;
    fs->p = sw_failsim_prob(rate, step_seconds);
    fs->seed = seed;
    return 0;
}

void
sw_failsim_release(struct sw_failsim *fs)
{
    sw_free(fs->ev);
    memset(fs, 0, sizeof(*fs));
}


static int
ev_cmp(const struct sw_fail_event *a, const struct sw_fail_event *b)
{
    if (a->slot != b->slot)
        return a->slot < b->slot ? -1 : 1;
    return (a->stage > b->stage) - (a->stage < b->stage);
}

static int
ev_qsort_cmp(const void *a, const void *b)
{
    return ev_cmp(a, b);
}

bool
sw_failsim_fails(const struct sw_failsim *fs, long slot, int stage)
{
    if (slot < 0 || stage < 0 || stage >= fs->S)
        return false;
    if (fs->replay) {
        struct sw_fail_event key = {slot, stage};
        return bsearch(&key, fs->ev, fs->nev, sizeof(key), ev_qsort_cmp) != NULL;
    }
    if (fs->p <= 0)
        return false;
    uint64_t h = sw_mix64(sw_mix64(fs->seed ^ 0xfa11ull) ^
                          sw_mix64((uint64_t)slot * 1024u + (uint64_t)stage));
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
    return u < fs->p;
}

int
sw_failsim_between(const struct sw_failsim *fs, long slot0, long slot1, struct sw_fail_event *out,
                   int max)
{
    int n = 0;

    for (long k = SW_MAX(slot0, 0L); k < slot1; k++)
        for (int s = 0; s < fs->S; s++)
            if (sw_failsim_fails(fs, k, s)) {
                if (n < max)
                    out[n] = (struct sw_fail_event){k, s};
                n++;
            }
    return n;
}

long
sw_failsim_slot_at(const struct sw_failsim *fs, double t)
{
    /* a tiny tolerance so that k * X computed by repeated addition lands on k */
    return (long)ceil(t / fs->step_seconds - 1e-9);
}

int
sw_failsim_save(const struct sw_failsim *fs, const char *path, long horizon)
{
    char tmp[4200];
    FILE *f;
    int err = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!(f = fopen(tmp, "w"))) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", tmp, sw_strerror(err));
        return err;
    }
    fprintf(f, "# swarm failure schedule v1\nstages %d\nrate %.17g\nstep_seconds %.17g\n"
               "seed %llu\nhorizon %ld\n",
            fs->S, fs->rate, fs->step_seconds, (unsigned long long)fs->seed, horizon);
    for (long k = 0; k < horizon; k++)
        for (int s = 0; s < fs->S; s++)
            if (sw_failsim_fails(fs, k, s))
                fprintf(f, "fail %ld %d\n", k, s);
    if (ferror(f))
        err = -SW_EIO;
    if (fclose(f) != 0 && err == 0)
        err = -errno;
    if (err == 0 && rename(tmp, path) < 0)
        err = -errno;
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "cannot write '%s': %s", path, sw_strerror(err));
        remove(tmp);
    }
    return err;
}

int
sw_failsim_load(struct sw_failsim *fs, const char *path, int S)
{
    char line[256], key[32];
    FILE *f;
    int lineno = 0, err = 0, fileS = -1;
    size_t cap = 0;
    double rate = -1, X = -1;
    unsigned long long seed = 0;
    long horizon = -1;

    memset(fs, 0, sizeof(*fs));
    if (!(f = fopen(path, "r"))) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot open '%s': %s", path, sw_strerror(err));
        return err;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%31s", key) != 1)
            goto bad;
        if (!strcmp(key, "stages")) {
            if (sscanf(line, "%*s %d", &fileS) != 1 || fileS < 1)
                goto bad;
        } else if (!strcmp(key, "rate")) {
            if (sscanf(line, "%*s %lf", &rate) != 1 || !(rate >= 0 && rate <= 1))
                goto bad;
        } else if (!strcmp(key, "step_seconds")) {
            if (sscanf(line, "%*s %lf", &X) != 1 || !(X > 0))
                goto bad;
        } else if (!strcmp(key, "seed")) {
            if (sscanf(line, "%*s %llu", &seed) != 1)
                goto bad;
        } else if (!strcmp(key, "horizon")) {
            if (sscanf(line, "%*s %ld", &horizon) != 1 || horizon < 0)
                goto bad;
        } else if (!strcmp(key, "fail")) {
            struct sw_fail_event e;
            if (fileS < 0 || sscanf(line, "%*s %ld %d", &e.slot, &e.stage) != 2 || e.slot < 0 ||
                e.stage < 0 || e.stage >= fileS)
                goto bad;
            if (fs->nev == cap) {
                size_t ncap = cap ? 2 * cap : 64;
                void *p = sw_realloc(fs->ev, ncap * sizeof(*fs->ev));
                if (!p) {
                    err = -SW_ENOMEM;
                    goto out;
                }
                fs->ev = p;
                cap = ncap;
            }
            fs->ev[fs->nev++] = e;
        } else {
            goto bad;
        }
    }
    if (fileS < 0 || rate < 0 || X < 0 || horizon < 0) {
        sw_log(SW_LOG_ERROR, "'%s': missing stages, rate, step_seconds or horizon", path);
        err = -SW_EFORMAT;
        goto out;
    }
    if (fileS != S) {
        sw_log(SW_LOG_ERROR, "'%s' is a schedule for %d stages, this run has %d", path, fileS, S);
        err = -SW_ECONFIG;
        goto out;
    }
    qsort(fs->ev, fs->nev, sizeof(*fs->ev), ev_qsort_cmp);
    fs->S = S;
    fs->rate = rate;
    fs->step_seconds = X;
    fs->p = sw_failsim_prob(rate, X);
    fs->seed = seed;
    fs->horizon = horizon;
    fs->replay = true;
    goto out;
bad:
    sw_log(SW_LOG_ERROR, "'%s':%d: malformed schedule line", path, lineno);
    err = -SW_EFORMAT;
out:
    fclose(f);
    if (err < 0)
        sw_failsim_release(fs);
    return err;
}
