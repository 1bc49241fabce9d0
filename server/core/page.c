#include "core/page.h"

/* What a message in a repeated field costs besides its own bytes: a tag
 * and its length. */
enum { ENTRY_FRAMING = 8 };

bool srv_page_admit(srv_page *p, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg) + ENTRY_FRAMING;
    if (p->count == p->max_count || (p->count > 0 && p->bytes + size > p->max_bytes)) {
        p->full = true;
        return false;
    }
    p->count++;
    p->bytes += size;
    return true;
}

uint32_t srv_page_want(const srv_page *p)
{
    size_t want = p->max_count - p->count + 1;
    return (uint32_t)(want > SRV_PAGE_READ_BATCH ? SRV_PAGE_READ_BATCH : want);
}
