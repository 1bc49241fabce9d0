/* Limits every layer shares, down to the store (a backend sizes columns
 * and buffers by them). The wire contract's own limits are in
 * service/contract.h, which includes these. */
#ifndef CAIRN_SERVER_BASE_LIMITS_H
#define CAIRN_SERVER_BASE_LIMITS_H

#define SRV_ID_MAX 128                    /* run_id, worker_id, holder, ... */
#define SRV_EVENT_TYPE_MAX 128            /* Event.type, bytes */
#define SRV_TIMESTAMP_LEN 27              /* 2026-01-28T10:15:30.123456Z */
#define SRV_SHA256_HEX 64
/* What an event costs in a page besides its payload: ids, type, framing. */
#define SRV_EVENT_COST (2 * SRV_ID_MAX + SRV_EVENT_TYPE_MAX + 64)

#endif
