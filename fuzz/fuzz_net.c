/* libFuzzer target: the DICOM network parsers (src/net) and the acceptor
 * state machine.  Each input is
 *   - decoded as an A-ASSOCIATE-RQ and -AC body, a P-DATA-TF body (PDV
 *     walk) and a DIMSE command set;
 *   - then streamed, as a peer would send it, into a full association
 *     (covct_net_serve_fd on a socketpair) with a store callback: a
 *     malformed PDU must end in an A-ABORT, never a crash or a hang.
 * Seeds in fuzz/corpus/net: a whole echo + store exchange recorded from
 * dcmtk's storescu (see fuzz/corpus/net/README). */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/net.h"
#include "net/net_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t on_store(void *user, covct_net_store_request *rq,
                         char *comment, size_t n)
{
    (void)user;
    (void)comment;
    (void)n;
    covct_free(rq->file);
    rq->file = NULL;
    return COVCT_DIMSE_SUCCESS;
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    uint8_t buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static net_assoc_pdu pdu;
    int reason;
    net_assoc_decode(data, size, false, &pdu, &reason, NULL);
    net_assoc_decode(data, size, true, &pdu, &reason, NULL);
    net_cmd cmd;
    net_cmd_decode(data, size, &cmd, NULL);
    size_t off = 0;
    net_pdv pdv;
    while (net_pdv_next(data, size, &off, &pdv, NULL) > 0)
        ;

    if (size > 65536)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return 0;
    pthread_t t;
    if (pthread_create(&t, NULL, drain, &sv[0])) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    /* The whole input is the peer's byte stream, then end of stream. */
    size_t done = 0;
    while (done < size) {
        ssize_t w = send(sv[0], data + done, size - done, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        done += (size_t)w;
        if (done < size)
            break; /* buffer full: the server reads the rest below */
    }
    covct_net_server_config cfg = {
        .ae_title = "COVCT",
        .max_pdu = 16384,
        .artim_s = 1,
        .idle_s = 1,
        .max_dataset = 1 << 20,
        .on_store = on_store,
    };
    covct_net_assoc_info info = {.id = 1, .peer_host = "fuzz"};
    if (done == size) {
        shutdown(sv[0], SHUT_WR);
        covct_net_serve_fd(&cfg, sv[1], &info); /* closes sv[1] */
    } else {
        close(sv[1]);
    }
    pthread_join(t, NULL);
    close(sv[0]);
    return 0;
}
