/*
 * boot.h - what devmaild says when it starts: the boot line in the system
 * log and the boot mail ("Email On Boot", Events/OnBoot/Email).
 *
 * The boot mail goes to Email/ToAddress from Email/FromAddress with the
 * subject "<host name> booted" and a plain-text body: host name, devmail
 * version, when devmaild started, the machine's uptime, addresses,
 * gateways, DNS servers and the clock state.  It is queued like any other
 * message (durable before boot_mail_queue() returns) and delivered by the
 * outbox worker, so a server that is down at boot gets it later.
 */
#ifndef DEVMAIL_DAEMON_BOOT_H
#define DEVMAIL_DAEMON_BOOT_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "core/err.h"
#include "core/netinfo.h"
#include "core/registry.h"
#include "mail/outbox.h"

#define BOOT_BODY_MAX 8192

struct boot_info {
	char host[256];        /* IpConfig/HostName, else the system host name */
	char version[32];      /* devmail's version */
	pid_t pid;             /* devmaild's */
	time_t started;        /* when devmaild started (wall clock) */
	long uptime;           /* seconds the machine has been up; -1 unknown */
	struct netinfo ni;     /* addresses, gateways, DNS, clock */
};

/* Fills *bi (never fails for a missing part: it stays empty).  `started`
 * is the daemon's start time; `version` its version string. */
void boot_info_read(struct registry *reg, time_t started, const char *version,
                    struct boot_info *bi);

/* The addresses worth showing, "eth0 192.0.2.7/24, eth0 fe80::1/64"
 * (interfaces that are up, loopback left out unless nothing else is);
 * "none" when there are none. */
void boot_addresses(const struct boot_info *bi, const char *sep, char *out,
                    size_t cap);

/* "devmaild 0.1.0 started on unit7 (pid 42); addresses ...; gateway ...;
 * DNS ...; clock synchronised (NTP)" */
void boot_log_line(const struct boot_info *bi, char *out, size_t cap);

/* "<host> booted" */
void boot_mail_subject(const struct boot_info *bi, char *out, size_t cap);

/* The body, LF line ends (the message builder makes them CRLF).  Returns
 * its length (cut at cap - 1). */
size_t boot_mail_body(const struct boot_info *bi, char *out, size_t cap);

/* Queues the boot mail (see the top).  Errors: DM_ECONFIG naming the key
 * when Email/ToAddress or Email/FromAddress is not set, and
 * submit_enqueue_message()'s errors; nothing is queued on error. */
enum dm_status boot_mail_queue(const char *root, struct registry *reg,
                               const struct boot_info *bi,
                               char id[OUTBOX_ID_MAX], struct dm_err *err);

#endif
