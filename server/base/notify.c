#include "base/notify.h"
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The address $NOTIFY_SOCKET names, and its length for sendto; -1 when it
 * is neither an absolute path nor '@' and a name, or too long. An
 * abstract name is not NUL-terminated: its length is the address's. */
static int notify_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = strlen(name);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof sa->sun_path)
        return -1;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@')
        sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    return 0;
}

int srv_notify(const char *fmt, ...)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    char state[SRV_NOTIFY_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(state, sizeof state, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof state) {
        srv_warn("sd_notify: the state is longer than %d bytes; not sent", SRV_NOTIFY_MAX - 1);
        return -1;
    }
    struct sockaddr_un sa;
    socklen_t len;
    if (notify_address(name, &sa, &len) < 0) {
        srv_warn("sd_notify: NOTIFY_SOCKET=%s is not an absolute path or @abstract name "
                 "of at most %zu bytes; not sent",
                 name, sizeof sa.sun_path - 1);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        srv_warn("sd_notify: socket: %s", strerror(errno));
        return -1;
    }
    ssize_t sent;
    do
        sent = sendto(fd, state, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (sent < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (sent != n) {
        srv_warn("sd_notify: sending to %s: %s", name,
                 sent < 0 ? strerror(saved) : "short datagram");
        return -1;
    }
    return 0;
}
