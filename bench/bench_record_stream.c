/*
 * Would writing the journal record while the instance arrives make one
 * association faster?  (docs/internals/store.md, "Streaming the record")
 *
 * A sender thread sends 512 KiB "instances" over loopback TCP in 256 KiB
 * pieces (the PDU size covct announces) and waits for a one-byte answer
 * after each, as storescu waits for the C-STORE response.  The receiver
 * makes each instance durable in a zero-filled journal file before it
 * answers, one of two ways:
 *   whole   receive everything, then one O_DIRECT | O_DSYNC write of
 *           header page + payload (what covct's store does);
 *   stream  submit each complete piece of the payload with Linux native
 *           AIO through a second descriptor without O_DSYNC while the rest
 *           arrives, then write the remainder, wait for the pieces, and
 *           write the header page through the O_DSYNC descriptor (its
 *           cache flush covers the pieces).
 * Printed per run: instances/s and the mean time from the last byte
 * received to durable (the part the sender waits for).
 *
 * Usage: covct-bench-record-stream whole|stream N JOURNAL_FILE [PIECE_KIB]
 * JOURNAL_FILE must exist, be at least 256 MiB and lie on the disk under
 * test (e.g. dd if=/dev/zero of=F bs=1M count=256 conv=fsync).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define INSTANCE (512u * 1024u)
#define PDU (256u * 1024u)
#define PAGE 4096u
#define MAX_PIECES 64

static int g_port;
static int g_n;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "covct-bench-record-stream: %s: %s\n", what,
            strerror(errno));
    exit(1);
}

static void *sender(void *arg)
{
    (void)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)g_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa))
        die("connect");
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t *buf = malloc(INSTANCE);
    if (!buf)
        die("malloc");
    memset(buf, 7, INSTANCE);
    for (int i = 0; i < g_n; i++) {
        for (size_t o = 0; o < INSTANCE; o += PDU) {
            size_t n = PDU;
            const uint8_t *p = buf + o;
            while (n) {
                ssize_t w = send(s, p, n, 0);
                if (w <= 0)
                    die("send");
                p += w;
                n -= (size_t)w;
            }
        }
        char ack;
        if (recv(s, &ack, 1, MSG_WAITALL) != 1)
            die("receive the answer");
    }
    close(s);
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "whole") && strcmp(argv[1], "stream"))) {
        fprintf(stderr, "usage: covct-bench-record-stream whole|stream N "
                        "JOURNAL_FILE [PIECE_KIB]\n");
        return 2;
    }
    int stream = !strcmp(argv[1], "stream");
    g_n = atoi(argv[2]);
    size_t piece = argc > 4 ? (size_t)atoi(argv[4]) * 1024u : 128u * 1024u;
    if (g_n <= 0 || piece < PAGE || piece % PAGE) {
        fprintf(stderr, "N must be positive and PIECE_KIB a multiple of 4\n");
        return 2;
    }
    int fd_sync = open(argv[3], O_WRONLY | O_DIRECT | O_DSYNC);
    int fd_plain = open(argv[3], O_WRONLY | O_DIRECT);
    struct stat st;
    if (fd_sync < 0 || fd_plain < 0 || fstat(fd_sync, &st))
        die(argv[3]);
    off_t size = st.st_size;
    if (size < (off_t)(INSTANCE + 2 * PAGE) * 2) {
        fprintf(stderr, "%s: too small\n", argv[3]);
        return 2;
    }
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, MAX_PIECES, &ctx))
        die("io_setup");

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) ||
        listen(ls, 1) || getsockname(ls, (struct sockaddr *)&sa, &sl))
        die("listen");
    g_port = ntohs(sa.sin_port);
    pthread_t th;
    if (pthread_create(&th, NULL, sender, NULL))
        die("thread");
    int c = accept(ls, NULL, NULL);
    if (c < 0)
        die("accept");
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    void *mem = NULL;
    if (posix_memalign(&mem, PAGE, INSTANCE + PAGE))
        die("posix_memalign");
    uint8_t *rec = mem, *payload = rec + PAGE;
    memset(rec, 0, INSTANCE + PAGE);
    off_t off = 2 * PAGE;
    double t0 = now(), tail = 0;
    for (int i = 0; i < g_n; i++) {
        if (off + (off_t)(INSTANCE + PAGE) > size)
            off = 2 * PAGE;
        size_t got = 0, submitted = 0;
        long pieces = 0;
        struct iocb cb[MAX_PIECES];
        while (got < INSTANCE) {
            ssize_t r = recv(c, payload + got, INSTANCE - got, 0);
            if (r <= 0)
                die("recv");
            got += (size_t)r;
            while (stream && got < INSTANCE && got - submitted >= piece &&
                   pieces < MAX_PIECES) {
                struct iocb *p = &cb[pieces];
                memset(p, 0, sizeof *p);
                p->aio_fildes = (uint32_t)fd_plain;
                p->aio_lio_opcode = IOCB_CMD_PWRITE;
                p->aio_buf = (uint64_t)(uintptr_t)(payload + submitted);
                p->aio_nbytes = piece;
                p->aio_offset = off + (off_t)(PAGE + submitted);
                if (syscall(SYS_io_submit, ctx, 1L, &p) != 1)
                    die("io_submit");
                pieces++;
                submitted += piece;
            }
        }
        double a = now();
        memset(rec, (int)(i & 0xff) | 1, 128); /* the header changes */
        if (!stream) {
            if (pwrite(fd_sync, rec, INSTANCE + PAGE, off) !=
                (ssize_t)(INSTANCE + PAGE))
                die("pwrite");
        } else {
            size_t rest = INSTANCE - submitted;
            if (pwrite(fd_plain, payload + submitted, rest,
                       off + (off_t)(PAGE + submitted)) != (ssize_t)rest)
                die("pwrite");
            struct io_event ev[MAX_PIECES];
            if (pieces && syscall(SYS_io_getevents, ctx, pieces, pieces, ev,
                                  NULL) != pieces)
                die("io_getevents");
            for (long k = 0; k < pieces; k++)
                if (ev[k].res != (int64_t)piece) {
                    fprintf(stderr, "a piece was not written whole\n");
                    return 1;
                }
            if (pwrite(fd_sync, rec, PAGE, off) != (ssize_t)PAGE)
                die("pwrite");
        }
        tail += now() - a;
        off += INSTANCE + PAGE;
        char ack = 1;
        if (send(c, &ack, 1, 0) != 1)
            die("answer");
    }
    double t = now() - t0;
    pthread_join(th, NULL);
    printf("%-6s piece %3zu KiB: %5.0f instances/s, last byte to durable "
           "%.3f ms\n",
           argv[1], piece / 1024, g_n / t, tail / g_n * 1e3);
    free(mem);
    return 0;
}
