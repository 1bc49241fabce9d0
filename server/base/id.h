/* The id rule every layer shares: run ids, worker ids, holders,
 * checkpoint ids, and the names and run prefixes of the tokens file. */
#ifndef CAIRN_SERVER_BASE_ID_H
#define CAIRN_SERVER_BASE_ID_H

#include "base/limits.h"

#include <stdbool.h>

#define SRV_ID_PATTERN "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"

/* True when s matches SRV_ID_PATTERN (1..SRV_ID_MAX bytes). */
bool srv_id_valid(const char *s);

#endif
