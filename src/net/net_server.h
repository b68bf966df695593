/* Between the listener (server.c) and the acceptor side of an association
 * (scp.c). */
#ifndef COVCT_NET_SERVER_H
#define COVCT_NET_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "covct/net.h"

/* Serve one accepted connection; over_cap: answer the association request
 * with A-ASSOCIATE-RJ (transient, local limit exceeded).  Closes fd. */
void net_serve_fd(const covct_net_server_config *cfg, int fd,
                  const covct_net_assoc_info *info, bool over_cap,
                  atomic_bool *stop);

/* Whether the allow-list host `spec` (numeric address or name) is the
 * numeric address `addr`. */
bool net_server_host_matches(const char *spec, const char *addr);

#endif
