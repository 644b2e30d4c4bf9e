/*
 * failsim.h - the failure schedule of a simulated swarm.
 *
 * Time is cut into slots of step_seconds (the simulated time of one
 * failure-free training step).  In every slot each of the S stages fails
 * independently with probability
 *     p = 1 - (1 - P)^(step_seconds / 3600)
 * where P is the failure rate per stage per hour (a stage that fails with
 * probability P within an hour).  A stage fails at the start of its slot.
 *
 * Draws are counter-based: whether (slot, stage) fails is a pure function
 * of (seed, slot, stage), so the schedule is the same whatever is asked in
 * whatever order, and identical across recovery strategies: strategies
 * whose steps take longer (checkpoint saves, redundant computation) meet
 * the same failures at the same simulated times, just at other steps.
 *
 * A schedule can be written to a text file and replayed (then the file's
 * events are the only failures; slots past its horizon have none):
 *     # swarm failure schedule v1
 *     stages 8
 *     rate 0.1
 *     step_seconds 30
 *     seed 1
 *     horizon 12000
 *     fail 123 4          <- slot 123, stage 4 (one line per event, sorted)
 *
 * Ownership: the caller owns struct sw_failsim; init/load fill it, release
 * frees the replayed events.  Read-only after init: any thread.
 */
#ifndef SW_FAILSIM_H
#define SW_FAILSIM_H

#include <stdbool.h>
#include <stdint.h>

struct sw_fail_event {
    long slot;
    int stage;
};

struct sw_failsim {
    int S;
    double rate;          /* P, failures per stage per hour */
    double step_seconds;  /* slot length, simulated seconds */
    double p;             /* per stage per slot */
    uint64_t seed;
    bool replay;          /* events come from a file */
    struct sw_fail_event *ev; /* [nev] replayed events, sorted by (slot, stage); owned */
    size_t nev;
    long horizon;         /* replay: slots the file covers */
};

/* p for rate P per hour and slots of step_seconds. */
double sw_failsim_prob(double rate, double step_seconds);

/* Drawn schedule.  -SW_EINVAL for rate outside [0, 1] or step_seconds <= 0. */
int sw_failsim_init(struct sw_failsim *fs, int S, double rate, double step_seconds,
                    uint64_t seed) SW_WARN_UNUSED;
/* Replayed schedule from path; -SW_EFORMAT (logged, with the line) when
 * malformed, -SW_ECONFIG when its stage count is not S. */
int sw_failsim_load(struct sw_failsim *fs, const char *path, int S) SW_WARN_UNUSED;
void sw_failsim_release(struct sw_failsim *fs);

/* Does stage fail at the start of slot? */
bool sw_failsim_fails(const struct sw_failsim *fs, long slot, int stage);

/* The failures of slots [slot0, slot1), in slot then stage order: up to max
 * of them into out; returns how many there are (may exceed max). */
int sw_failsim_between(const struct sw_failsim *fs, long slot0, long slot1,
                       struct sw_fail_event *out, int max);

/* First slot whose start is at or after simulated time t (seconds). */
long sw_failsim_slot_at(const struct sw_failsim *fs, double t);

/* Write slots [0, horizon) to path (atomically: path.tmp then rename). */
int sw_failsim_save(const struct sw_failsim *fs, const char *path, long horizon) SW_WARN_UNUSED;

#endif
