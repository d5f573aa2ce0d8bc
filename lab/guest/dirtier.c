/*
 * dirtier: keep a working set of guest memory dirty at a steady rate.
 *
 *   dirtier <working_set_MB> <rate_MB_per_s>      run (started by /init)
 *   dirtier set <working_set_MB> <rate_MB_per_s>  change the running one
 *
 * The working set is touched once up front so it is resident, then pages are
 * rewritten round-robin at the requested rate (one 8-byte store per 4 KiB
 * page is enough: dirty tracking is per page). Each store writes a value that
 * encodes (page, pass); before overwriting, the previous value is checked, so
 * memory that came back wrong after a live migration is reported on the
 * console as "DIRTY MISMATCH ..." instead of going unnoticed. rate 0 = the
 * working set is allocated and then left idle.
 *
 * Runtime control (no reboot): `dirtier set WS RATE` (run by the host through
 * the guest agent's guest-exec) writes "WS RATE NONCE" to /run/dirty.ctl and
 * sends SIGUSR1 to the pid in /run/dirtier.pid. The running dirtier applies
 * it at its next 10 ms tick (a new working set is allocated and touched, the
 * old one freed; a new rate takes effect at once), writes "WS RATE NONCE" to
 * /run/dirty.state and prints "DIRTY set ..." on the console. `set` waits for
 * its nonce to appear in the state file and exits 0, or 1 after 10 s.
 *
 * Static, no libc beyond the basics, so it runs from a busybox initramfs.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define TICK_NS 10000000L /* pace in 10 ms slices */
#define CTL "/run/dirty.ctl"
#define STATE "/run/dirty.state"
#define PIDFILE "/run/dirtier.pid"

static unsigned char *mem;
static uint64_t *pass, pages, cursor, mismatches;
static long ws_mb, rate_mb;

static uint64_t expected(uint64_t page, uint64_t p)
{
    return 0x9e3779b97f4a7c15ULL ^ (page << 24) ^ p;
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Replace the working set by a fresh one of `mb` MB (0 = none); 0 on success. */
static int set_ws(long mb)
{
    if (mem) {
        munmap(mem, pages * PAGE);
        free(pass);
        mem = NULL;
        pass = NULL;
    }
    pages = cursor = 0;
    ws_mb = 0;
    if (mb <= 0)
        return 0;
    uint64_t n = (uint64_t)mb * 1024 * 1024 / PAGE;
    unsigned char *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        say("DIRTY mmap failed for %ld MB\n", mb);
        return 1;
    }
    /* pass numbers are kept per page so a partial pass stays checkable */
    uint64_t *ps = calloc(n, sizeof(uint64_t));
    if (!ps) {
        munmap(m, n * PAGE);
        say("DIRTY calloc failed for %ld MB\n", mb);
        return 1;
    }
    for (uint64_t p = 0; p < n; p++)
        *(volatile uint64_t *)(m + p * PAGE) = expected(p, 0);
    mem = m;
    pass = ps;
    pages = n;
    ws_mb = mb;
    return 0;
}

static void write_file(const char *path, const char *text)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static void apply_ctl(void)
{
    long ws = ws_mb, rate = rate_mb;
    char nonce[64] = "-", buf[160];
    FILE *f = fopen(CTL, "r");
    if (!f || fscanf(f, "%ld %ld %63s", &ws, &rate, nonce) < 2) {
        if (f)
            fclose(f);
        say("DIRTY set ignored: unreadable %s\n", CTL);
        return;
    }
    fclose(f);
    if (ws != ws_mb && set_ws(ws) != 0)
        ws = 0;
    rate_mb = rate < 0 ? 0 : rate;
    snprintf(buf, sizeof buf, "%ld %ld %s\n", ws_mb, rate_mb, nonce);
    write_file(STATE, buf);
    say("DIRTY set ws=%ldMB rate=%ldMB/s\n", ws_mb, rate_mb);
}

static int ctl_main(long ws, long rate)
{
    char nonce[32], buf[160];
    snprintf(nonce, sizeof nonce, "%d-%ld", (int)getpid(), (long)time(NULL));
    snprintf(buf, sizeof buf, "%ld %ld %s\n", ws, rate, nonce);
    write_file(CTL, buf);
    FILE *f = fopen(PIDFILE, "r");
    int pid = 0;
    if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "dirtier set: no running dirtier (%s)\n", PIDFILE);
        return 1;
    }
    fclose(f);
    for (int i = 0; i < 1000; i++) { /* 10 s */
        if (i % 100 == 0 && kill(pid, SIGUSR1) != 0) {
            perror("dirtier set: kill");
            return 1;
        }
        usleep(10000);
        f = fopen(STATE, "r");
        if (f) {
            char line[160] = "";
            if (fgets(line, sizeof line, f) && strstr(line, nonce)) {
                fclose(f);
                fputs(line, stdout);
                return 0;
            }
            fclose(f);
        }
    }
    fprintf(stderr, "dirtier set: not applied within 10 s\n");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "set") == 0) {
        if (argc != 4) {
            fprintf(stderr, "usage: dirtier set WS_MB RATE_MB_S\n");
            return 2;
        }
        return ctl_main(atol(argv[2]), atol(argv[3]));
    }
    long ws = argc > 1 ? atol(argv[1]) : 0;
    rate_mb = argc > 2 ? atol(argv[2]) : 0;
    if (rate_mb < 0)
        rate_mb = 0;

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL); /* taken with sigwaitinfo / sigpending */
    char buf[32];
    snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    write_file(PIDFILE, buf);

    if (ws <= 0)
        say("DIRTY idle (no working set)\n");
    else if (set_ws(ws) == 0)
        say("DIRTY start ws=%ldMB rate=%ldMB/s pages=%llu\n", ws_mb, rate_mb,
            (unsigned long long)pages);
    snprintf(buf, sizeof buf, "%ld %ld boot\n", ws_mb, rate_mb);
    write_file(STATE, buf);

    double carry = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        if (rate_mb <= 0 || pages == 0) { /* idle until told otherwise */
            sigwaitinfo(&usr1, NULL);
            apply_ctl();
            clock_gettime(CLOCK_MONOTONIC, &next);
            carry = 0;
            continue;
        }
        sigset_t pend;
        sigpending(&pend);
        if (sigismember(&pend, SIGUSR1)) {
            sigwaitinfo(&usr1, NULL);
            apply_ctl();
            continue;
        }
        /* pages per 10 ms tick; fractional remainder carried over */
        carry += (double)rate_mb * 1024 * 1024 / PAGE * TICK_NS / 1e9;
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
