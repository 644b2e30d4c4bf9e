#include "sw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
sw_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
#define SW__ERR_MSG(name, val, msg)                                            \
    case val:                                                                  \
        return msg;
        SW_ERRNO_MAP(SW__ERR_MSG)
#undef SW__ERR_MSG
    default:
        return strerror(err);
    }
}

const char *
sw_err_name(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
#define SW__ERR_NAME(name, val, msg)                                           \
    case val:                                                                  \
        return #name;
        SW_ERRNO_MAP(SW__ERR_NAME)
#undef SW__ERR_NAME
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case ERANGE: return "ERANGE";
    case ENODEV: return "ENODEV";
    case ENOTSUP: return "ENOTSUP";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPROTO: return "EPROTO";
    case EOVERFLOW: return "EOVERFLOW";
    case ECANCELED: return "ECANCELED";
    default: return "EUNKNOWN";
    }
}

void
sw__assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "swarm: assertion '%s' failed at %s:%d (%s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
