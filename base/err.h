/*
 * err.h - error codes.
 *
 * Every fallible function returns 0 (or a count) on success and a negative
 * code on failure.  System failures are -errno; swarm's own failures use the
 * codes below, numbered from 1000 so they never collide with errno.  One
 * table (SW_ERRNO_MAP) gives each code its name and message, as libuv does.
 */
#ifndef SW_ERR_H
#define SW_ERR_H

#include <errno.h>

#define SW_ERRNO_MAP(XX)                                                       \
    XX(EFORMAT, 1000, "malformed file")                                        \
    XX(ESHAPE, 1001, "tensor shape mismatch")                                  \
    XX(ENONFINITE, 1002, "non-finite value")                                   \
    XX(ESIG, 1003, "bad signature")                                            \
    XX(ERUN, 1004, "wrong run id")                                             \
    XX(EREPLAY, 1005, "replayed or stale sequence")                            \
    XX(EHASH, 1006, "payload hash mismatch")                                   \
    XX(ETOOBIG, 1007, "message too large")                                     \
    XX(EMSG, 1008, "malformed message")                                        \
    XX(ECUDA, 1009, "CUDA error")                                              \
    XX(ELOST, 1010, "stage lost and not recoverable")                          \
    XX(ECONFIG, 1011, "bad configuration")                                     \
    XX(ECLOSED, 1012, "closed")                                                \
    XX(EDTYPE, 1013, "unsupported dtype")

enum {
#define SW__ERR_ENUM(name, val, msg) SW_##name = (val),
    SW_ERRNO_MAP(SW__ERR_ENUM)
#undef SW__ERR_ENUM
    /* system codes under swarm's names, for symmetry in callers */
    SW_ENOMEM = ENOMEM,
    SW_EINVAL = EINVAL,
    SW_EIO = EIO,
    SW_ENOENT = ENOENT,
    SW_EEXIST = EEXIST,
    SW_EPERM = EPERM,
    SW_EAGAIN = EAGAIN,
    SW_ERANGE = ERANGE,
    SW_ENODEV = ENODEV,
    SW_ENOTSUP = ENOTSUP,
    SW_ETIMEDOUT = ETIMEDOUT,
    SW_EPROTO = EPROTO,
    SW_EOVERFLOW = EOVERFLOW,
    SW_ECANCELED = ECANCELED,
};

/* Message for a negative (or positive) code; never NULL. */
const char *sw_strerror(int err);
/* Short name ("EFORMAT", "ENOENT"); never NULL. */
const char *sw_err_name(int err);

#endif
