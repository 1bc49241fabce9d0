#include "base/id.h"

#include <string.h>

static bool id_char(char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '.' || c == '_' || c == ':' || c == '-');
}

bool srv_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SRV_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i], i == 0))
            return false;
    return true;
}
