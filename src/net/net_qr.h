/* Query/Retrieve handlers (qr.c), called by the acceptor (scp.c) with the
 * request's command read; each reads the identifier and answers. */
#ifndef COVCT_NET_QR_H
#define COVCT_NET_QR_H

#include <stdbool.h>
#include <stdint.h>

#include "covct/net.h"
#include "net/net_assoc.h"

int net_handle_find(const covct_net_server_config *cfg, net_conn *c,
                    const covct_net_assoc_info *info, uint8_t pc_id,
                    const net_cmd *cmd, uint64_t *matches, int *abort_reason);
int net_handle_retrieve(const covct_net_server_config *cfg, net_conn *c,
                        const covct_net_assoc_info *info, uint8_t pc_id,
                        const net_cmd *cmd, bool is_get, uint16_t *next_id,
                        uint64_t *sent, int *abort_reason);

#endif
