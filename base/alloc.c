#include "sw.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* slabs this big or bigger are aligned to (and advised as) huge pages */
#define SW_ALLOC_HUGE ((size_t)2 << 20)

static struct sw_allocator alloc_cur = {malloc, realloc, free};

void
sw_alloc_set(const struct sw_allocator *a)
{
    if (a)
        alloc_cur = *a;
    else
        alloc_cur = (struct sw_allocator){malloc, realloc, free};
}

void *
sw_malloc(size_t size)
{
    return alloc_cur.malloc(size ? size : 1);
}

void *
sw_calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    p = sw_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *
sw_realloc(void *p, size_t size)
{
    return alloc_cur.realloc(p, size ? size : 1);
}

void
sw_free(void *p)
{
    int saved = errno;

    if (p)
        alloc_cur.free(p);
    errno = saved;
}

char *
sw_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sw_malloc(n);

    if (d)
        memcpy(d, s, n);
    return d;
}

/* What sw_malloc_big allocates for size: whole 64-byte lines, one at least. */
static size_t
big_len(size_t size)
{
    return size == 0 ? 64 : (size + 63) & ~(size_t)63;
}

void *
sw_malloc_big_untouched(size_t size)
{
    void *p = NULL;
    size_t align = size >= SW_ALLOC_HUGE ? SW_ALLOC_HUGE : 64;
    int rc;

    size = big_len(size);
    rc = posix_memalign(&p, align, size);
    if (rc != 0) {
        errno = rc;
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    /* a fault per 2 MiB instead of per 4 KiB: a stage's 255 MB state is
     * touched in 0.03-0.2 s instead of 0.9 s (this 2-core VM, quiet: its
     * faults are slow); refused where the kernel has no transparent huge
     * pages */
    if (align == SW_ALLOC_HUGE)
        (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

void *
sw_malloc_big(size_t size)
{
    void *p = sw_malloc_big_untouched(size);

    if (p) /* pre-fault: touch every page now, not in the hot loop */
        memset(p, 0, big_len(size));
    return p;
}

void
sw_free_big(void *p)
{
    int saved = errno;

    free(p);
    errno = saved;
}
