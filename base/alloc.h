/*
 * alloc.h - every heap allocation of swarm goes through here.
 *
 * The functions are replaceable (sw_alloc_set) and keep errno on failure.
 * sw_malloc_big returns 64-byte aligned memory that is already touched
 * (pre-faulted): on these machines the first touch of fresh pages runs at
 * 0.4-1.6 GB/s, so slabs are allocated once, pre-faulted, and reused;
 * those of 2 MiB or more are aligned to 2 MiB and advised as transparent
 * huge pages (MADV_HUGEPAGE), a fault per 2 MiB where the kernel allows.
 */
#ifndef SW_ALLOC_H
#define SW_ALLOC_H

#include <stddef.h>

struct sw_allocator {
    void *(*malloc)(size_t size);
    void *(*realloc)(void *p, size_t size);
    void (*free)(void *p);
};

/* Install a replacement (tests count allocations this way); NULL restores libc. */
void sw_alloc_set(const struct sw_allocator *a);

void *sw_malloc(size_t size) __attribute__((malloc, warn_unused_result));
void *sw_calloc(size_t n, size_t size) __attribute__((malloc, warn_unused_result));
void *sw_realloc(void *p, size_t size) __attribute__((warn_unused_result));
void sw_free(void *p);
char *sw_strdup(const char *s) __attribute__((malloc, warn_unused_result));

/* 64-byte aligned, zero-filled (so every page is touched); free with sw_free_big. */
void *sw_malloc_big(size_t size) __attribute__((malloc, warn_unused_result));
/* The same, aligned and advised but neither filled nor touched: its pages
 * fault (and hold whoever touches them) when the caller first writes them;
 * a caller that needs zeroes writes them itself (peers/step.h, Warm-up). */
void *sw_malloc_big_untouched(size_t size) __attribute__((malloc, warn_unused_result));
void sw_free_big(void *p);

#endif
