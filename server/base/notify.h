/* The service manager's readiness protocol, sd_notify(3), without
 * libsystemd: one datagram of "KEY=VALUE" lines to the AF_UNIX socket that
 * $NOTIFY_SOCKET names, an absolute path or, when it starts with '@', an
 * abstract socket. Without $NOTIFY_SOCKET (not started by systemd with
 * Type=notify) every call is a no-op. */
#ifndef CAIRN_SERVER_NOTIFY_H
#define CAIRN_SERVER_NOTIFY_H

/* Sends the state (newline-separated assignments, "READY=1\nSTATUS=...")
 * built from fmt, at most SRV_NOTIFY_MAX bytes. Returns 0 when it was sent
 * or there is nowhere to send it; -1 after logging a warning (a bad
 * $NOTIFY_SOCKET, a socket nobody reads): never fatal, the caller goes on.
 * Thread-safe; reads the environment, so nothing may setenv meanwhile. */
int srv_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

enum { SRV_NOTIFY_MAX = 1024 };

#endif
