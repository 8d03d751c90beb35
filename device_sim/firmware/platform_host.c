/*
 * The platform API of platform.h for a host process (compile with -DTAG_PLATFORM_HOST), so the
 * same application and model run natively: the fastest backend, and a check that the firmware
 * does not depend on the Arm toolchain for its results.
 *
 *   UART     raw bytes: input from file descriptor 0, output to file descriptor 1.
 *            tag_uart_getc() does not wait for a byte; when none is buffered it polls for at
 *            most HOST_IDLE_MS, so an idle device does not keep a core busy.
 *            End of input (the host end of the pseudo-terminal gone) ends the process.
 *   boot     when fd 0 is the master of a pseudo-terminal in packet mode (TIOCPKT, set by
 *            device_sim/native.py before the start), the process waits, before main(), until the
 *            host has opened the terminal and flushed its input (pyserial does both at open):
 *            the kernel reports the flush as TIOCPKT_FLUSHREAD. HELLO is then sent after the
 *            flush and cannot be thrown away by it, as QEMU's wait=on does for the emulators.
 *            Any other stdin (a pipe, a file): main() starts at once.
 *   counter  CLOCK_MONOTONIC, in nanoseconds since tag_counter_start().
 *   stack    not measured: tag_stack_peak() and tag_stack_reserved() report 0 (unknown).
 *   faults   SIGSEGV, SIGBUS, SIGILL and SIGFPE call tag_fault_report(0, signal number): a host
 *            process has no CFSR, and its PC says nothing about the tag. The process then exits
 *            with TAG_EXIT_FAULT.
 *   replay   the replay region is the file the environment variable TAG_REPLAY_ENV names
 *            (device_sim/backends/native.py sets it for bulk replay), mapped read-only at the
 *            first call; without it, or if it cannot be mapped, there is no region.
 *   exit     tag_exit(code) is exit(code).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

#ifndef TAG_REPLAY_ENV
#error "TAG_REPLAY_ENV (the environment variable naming the replay image) comes from appbuild.py"
#endif

#ifndef TAG_PLATFORM_HOST
#error "platform_host.c is the host build of the platform: compile with -DTAG_PLATFORM_HOST"
#endif

#define HOST_FD_IN 0
#define HOST_FD_OUT 1
#define HOST_IDLE_MS 2
#define HOST_RX_CHUNK 512

typedef struct {
    uint8_t rx[HOST_RX_CHUNK]; /* bytes read from fd 0 and not yet handed out */
    size_t rx_len;
    size_t rx_pos;
    struct timespec counter_origin;
    int counter_started;
    const uint8_t *replay; /* the mapped replay image, or NULL */
    uint32_t replay_bytes;
    int replay_looked;     /* the environment was read (once: the mapping lasts) */
} host_platform_t;

static host_platform_t host;

/* ---- start: signals, and waiting for the host ------------------------------------------- */

static void host_fault(int signo)
{
    tag_fault_report(0u, (uint32_t)signo);
    _exit(TAG_EXIT_FAULT);
}

static void host_install_fault_handlers(void)
{
    static const int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    struct sigaction action;
    size_t i;
    memset(&action, 0, sizeof action);
    action.sa_handler = host_fault;
    action.sa_flags = (int)SA_RESETHAND; /* a fault inside the report ends the process */
    sigemptyset(&action.sa_mask);
    for (i = 0u; i < sizeof signals / sizeof signals[0]; i++) {
        (void)sigaction(signals[i], &action, NULL);
    }
}

/* Block until the host's flush of the terminal (see the header), then leave packet mode. */
static void host_wait_for_open(void)
{
#if defined(TIOCGPKT) && defined(TIOCPKT) && defined(TIOCPKT_FLUSHREAD)
    int packet = 0;
    if (ioctl(HOST_FD_IN, TIOCGPKT, &packet) != 0 || packet == 0) {
        return; /* not a pseudo-terminal master in packet mode: nobody to wait for */
    }
    for (;;) {
        struct pollfd pfd = {HOST_FD_IN, POLLIN | POLLPRI, 0};
        uint8_t buf[HOST_RX_CHUNK];
        int ready = poll(&pfd, 1, -1);
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            exit(1);
        }
        ssize_t n = read(HOST_FD_IN, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            exit(0); /* the terminal was closed before the host opened it */
        }
        /* In packet mode every read starts with a status byte; 0 means data follows, which the
         * host does not send before HELLO: it is dropped. */
        if (buf[0] & TIOCPKT_FLUSHREAD) {
            break;
        }
    }
    packet = 0;
    (void)ioctl(HOST_FD_IN, TIOCPKT, &packet);
#endif
}

/* Runs before main(), as Reset_Handler does on the tag. */
__attribute__((constructor)) static void host_reset(void)
{
    host_install_fault_handlers();
    host_wait_for_open();
}

/* ---- UART ------------------------------------------------------------------------------- */

void tag_uart_init(void)
{
    host.rx_len = 0u;
    host.rx_pos = 0u;
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    while (len > 0u) {
        ssize_t n = write(HOST_FD_OUT, data, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(0); /* the host is gone: nobody to talk to */
        }
        data += n;
        len -= (uint32_t)n;
    }
}

void tag_uart_putc(uint8_t byte)
{
    tag_uart_write(&byte, 1u);
}

void tag_uart_puts(const char *text)
{
    tag_uart_write((const uint8_t *)text, (uint32_t)strlen(text));
}

/* Fill the receive buffer if it is empty; wait at most timeout_ms. Returns 1 if it has bytes. */
static int host_fill(int timeout_ms)
{
    if (host.rx_pos < host.rx_len) {
        return 1;
    }
    struct pollfd pfd = {HOST_FD_IN, POLLIN, 0};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready <= 0) {
        return 0; /* nothing yet (or EINTR: try again next call) */
    }
    ssize_t n = read(HOST_FD_IN, host.rx, sizeof host.rx);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return 0;
    }
    if (n <= 0) {
        exit(0); /* end of input: the host closed its end for good */
    }
    host.rx_len = (size_t)n;
    host.rx_pos = 0u;
    return 1;
}

int tag_uart_available(void)
{
    return host_fill(0);
}

int tag_uart_getc(void)
{
    if (!host_fill(HOST_IDLE_MS)) {
        return -1;
    }
    return (int)host.rx[host.rx_pos++];
}

/* ---- counter ---------------------------------------------------------------------------- */

static tag_count_t host_ns(void)
{
    struct timespec now;
    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t seconds = (int64_t)now.tv_sec - (int64_t)host.counter_origin.tv_sec;
    int64_t nanoseconds = (int64_t)now.tv_nsec - (int64_t)host.counter_origin.tv_nsec;
    return (tag_count_t)(seconds * 1000000000LL + nanoseconds);
}

void tag_counter_start(void)
{
    if (host.counter_started) {
        return;
    }
    (void)clock_gettime(CLOCK_MONOTONIC, &host.counter_origin);
    host.counter_started = 1;
}

uint8_t tag_counter_unit(void)
{
    return (uint8_t)(TAG_COUNTER_UNIT_ID);
}

tag_count_t tag_counter_now(void)
{
    return host_ns();
}

tag_count_t tag_counter_elapsed(tag_count_t since)
{
    return host_ns() - since;
}

/* A host process has no interrupts to keep out of a measurement. */
uint32_t tag_irq_mask(void)
{
    return 0u;
}

void tag_irq_restore(uint32_t state)
{
    (void)state;
}

void tag_counter_sync(void)
{
    /* Nanosecond resolution: nothing to align to. */
}

/* ---- replay region ---------------------------------------------------------------------- */

static void host_map_replay(void)
{
    const char *path = getenv(TAG_REPLAY_ENV);
    struct stat st;
    if (path == NULL || path[0] == '\0') {
        return;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return;
    }
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        size_t size = (size_t)st.st_size;
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            host.replay = (const uint8_t *)map;
            host.replay_bytes = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
        }
    }
    (void)close(fd);
}

uint32_t tag_replay_region(const uint8_t **base)
{
    if (!host.replay_looked) {
        host.replay_looked = 1;
        host_map_replay();
    }
    *base = host.replay;
    return host.replay_bytes;
}

/* ---- stack, exit ------------------------------------------------------------------------ */

uint32_t tag_stack_peak(void)
{
    return 0u; /* unknown on the host */
}

uint32_t tag_stack_reserved(void)
{
    return 0u; /* unknown on the host */
}

void tag_exit(int code)
{
    exit(code);
}
