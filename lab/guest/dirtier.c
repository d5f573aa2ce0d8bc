/*
 * dirtier: keep a working set of guest memory dirty at a steady rate.
 *
 *   dirtier <working_set_MB> <rate_MB_per_s>
 *
 * The working set is touched once up front so it is resident, then pages are
 * rewritten round-robin at the requested rate (one 8-byte store per 4 KiB
 * page is enough: dirty tracking is per page). Each store writes a value that
 * encodes (page, pass); before overwriting, the previous value is checked, so
 * memory that came back wrong after a live migration is reported on the
 * console as "DIRTY MISMATCH ..." instead of going unnoticed. rate 0 = the
 * working set is allocated and then left idle.
 *
 * Static, no libc beyond the basics, so it runs from a busybox initramfs.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define TICK_NS 10000000L /* pace in 10 ms slices */

static uint64_t expected(uint64_t page, uint64_t pass)
{
    return 0x9e3779b97f4a7c15ULL ^ (page << 24) ^ pass;
}

int main(int argc, char **argv)
{
    long ws_mb = argc > 1 ? atol(argv[1]) : 0;
    long rate_mb = argc > 2 ? atol(argv[2]) : 0;
    if (ws_mb <= 0) {
        printf("DIRTY idle (no working set)\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    uint64_t pages = (uint64_t)ws_mb * 1024 * 1024 / PAGE;
    unsigned char *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("DIRTY mmap failed for %ld MB\n", ws_mb);
        fflush(stdout);
        return 1;
    }
    /* pass numbers are kept per page so a partial pass stays checkable */
    uint64_t *pass = calloc(pages, sizeof(uint64_t));
    if (!pass) {
        printf("DIRTY calloc failed\n");
        return 1;
    }
    for (uint64_t p = 0; p < pages; p++)
        *(volatile uint64_t *)(mem + p * PAGE) = expected(p, 0);
    printf("DIRTY start ws=%ldMB rate=%ldMB/s pages=%llu\n", ws_mb, rate_mb,
           (unsigned long long)pages);
    fflush(stdout);
    if (rate_mb <= 0)
        for (;;)
            pause();

    /* pages per 10 ms tick; fractional remainder carried over */
    double per_tick = (double)rate_mb * 1024 * 1024 / PAGE * TICK_NS / 1e9;
    double carry = 0;
    uint64_t cursor = 0, mismatches = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        carry += per_tick;
        uint64_t n = (uint64_t)carry;
        carry -= (double)n;
        for (uint64_t i = 0; i < n; i++) {
            volatile uint64_t *w = (volatile uint64_t *)(mem + cursor * PAGE);
            uint64_t want = expected(cursor, pass[cursor]);
            uint64_t got = *w;
            if (got != want && mismatches < 20) {
                mismatches++;
                printf("DIRTY MISMATCH page=%llu pass=%llu want=%016llx got=%016llx\n",
                       (unsigned long long)cursor, (unsigned long long)pass[cursor],
                       (unsigned long long)want, (unsigned long long)got);
                fflush(stdout);
            }
            pass[cursor]++;
            *w = expected(cursor, pass[cursor]);
            if (++cursor == pages)
                cursor = 0;
        }
        next.tv_nsec += TICK_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
