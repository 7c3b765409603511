/*
 * peers.h - real SMTP servers on loopback for interop tests and the benchmark.
 *
 * Two independently written servers are started as child processes:
 *   PEER_AIOSMTPD     tests/interop/aiosmtpd_server.py under /usr/bin/python3
 *   PEER_SMTP_SERVER  tests/node/smtp_server.js under node (npm smtp-server)
 * Each prints "READY <port>" once listening; peer_start() waits for that line
 * and for the port to accept a connection, both bounded in time.  peer_stop()
 * sends SIGTERM to that PID, waits a bounded time, then SIGKILL, and reaps it.
 *
 * Each peer writes every accepted message into its capture directory as
 * NNNNNN.eml (1-based, in order) before it sends the 250 reply to the final
 * dot, so a client that saw 250 can load the file at once.  Format:
 *   MAIL FROM:<s>\n  RCPT TO:<r>\n...  AUTH <user|->\n  TLS <proto|->\n
 *   SMTPUTF8 <0|1>\n  \n  <raw message bytes>
 *
 * Paths come from $DEVMAIL_SOURCE_DIR (set by ctest).  Everything listens on
 * 127.0.0.1 only.
 */
#ifndef DEVMAIL_TESTS_PEERS_H
#define DEVMAIL_TESTS_PEERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "core/err.h"

enum peer_kind {
	PEER_AIOSMTPD,
	PEER_SMTP_SERVER,
};

#define PEER_START_TIMEOUT_MS 20000   /* READY line + accepting port */
#define PEER_STOP_TIMEOUT_MS 3000     /* SIGTERM grace before SIGKILL */
#define PEER_ARGS_MAX 32
#define PEER_RCPT_MAX 16

struct peer {
	enum peer_kind kind;
	pid_t pid;                 /* 0 when not running */
	int out_fd;                /* read end of the child's stdout, or -1 */
	unsigned port;
	char capture[PATH_MAX];    /* capture directory (created by peer_start) */
};

/* A test group's workspace: a temp dir with the test PKI in dir/pki, and a
 * pool of peers.  The pool lives in the group, not on a test's stack, so a
 * per-test teardown can stop the peers by PID even when a failed assertion
 * left the test early. */
#define PEER_GROUP_POOL 4
struct peer_group {
	char dir[PATH_MAX];
	char pki[PATH_MAX + 8];
	struct peer pool[PEER_GROUP_POOL];
	size_t npool;
	unsigned seq;              /* numbers capture dirs and data roots */
};

/* Makes the temp dir (devmail-<tag>-XXXXXX) and the PKI.  Returns 0, or -1
 * after printing why to stderr (for cmocka group setups). */
int peer_group_setup(struct peer_group *g, const char *tag);

/* Starts a peer into the next pool slot with "--tls TLS", the PKI's
 * `cert`.pem/.key ("server", "other", "self"; NULL for none) and `extra`
 * (NULL-terminated), capturing into dir/capture-N.  NULL with err filled
 * when the pool is full or the peer does not start. */
struct peer *peer_group_start(struct peer_group *g, enum peer_kind kind,
                              const char *tls, const char *cert,
                              const char *const *extra, struct dm_err *err);

/* Stops every started peer by PID (per-test teardown). */
void peer_group_stop_all(struct peer_group *g);

/* Stops the peers and removes the temp dir; -1 when it could not be
 * removed. */
int peer_group_teardown(struct peer_group *g);

/* Generates the test PKI (tests/lib/pki.sh) into dir: ca.pem, server.pem,
 * server.key, other.pem/key (wrong.example), self.pem/key.
 * Errors: DM_ECONFIG (no $DEVMAIL_SOURCE_DIR), DM_EIO (generator failed). */
enum dm_status peer_pki(const char *dir, struct dm_err *err);

/* Starts a peer with the given extra arguments (NULL-terminated; "--port 0"
 * and "--capture DIR" are added), capture directory `capture` (created when
 * missing).  *p is filled; stop it with peer_stop() in every case.
 * Errors: DM_ECONFIG (no $DEVMAIL_SOURCE_DIR, script or node_modules
 * missing), DM_EIO (fork/exec/pipe), DM_ETIMEOUT (no READY line or port not
 * accepting in time), DM_EPROTO (child exited or printed something else). */
enum dm_status peer_start(struct peer *p, enum peer_kind kind,
                          const char *const *args, const char *capture,
                          struct dm_err *err);

/* SIGTERM to p->pid, wait up to PEER_STOP_TIMEOUT_MS, then SIGKILL and
 * reap.  Returns the child's exit status as waitpid() reported it, or -1
 * when it had to be killed or was not running.  Safe to call twice. */
int peer_stop(struct peer *p);

/* Number of NNNNNN.eml files in the capture directory. */
size_t peer_capture_count(const struct peer *p);

/* Connections the peer accepted (aiosmtpd: lines of capture/connections;
 * 0 when the file is missing). */
size_t peer_connection_count(const struct peer *p);

/* One captured message. */
struct peer_message {
	char *file;                /* whole file, malloc'd, NUL-terminated */
	size_t file_len;
	char mail_from[320];
	char rcpt[PEER_RCPT_MAX][320];
	size_t nrcpt;
	char auth[128];            /* "-" when not authenticated */
	char tls[32];              /* "TLSv1.3", or "-" */
	bool smtputf8;
	unsigned session;          /* aiosmtpd: the connection's number (1, 2,
	                              ...), 0 when not recorded */
	const char *data;          /* message bytes inside file */
	size_t data_len;
	const char *body;          /* after the header/body blank line */
	size_t body_len;
};

/* Loads capture file number seq (1-based).  Free with
 * peer_message_free().  Errors: DM_ENOTFOUND, DM_EIO, DM_EPROTO (bad
 * format), DM_ENOMEM. */
enum dm_status peer_message_load(const struct peer *p, unsigned seq,
                                 struct peer_message *m, struct dm_err *err);
void peer_message_free(struct peer_message *m);

/* Copies the unfolded value of the first header field `name` (case
 * insensitive) of the top-level header into out[cap] (leading blanks
 * removed).  Returns false when the field is absent or does not fit. */
bool peer_message_header(const struct peer_message *m, const char *name,
                         char *out, size_t cap);

/* Finds the MIME part whose Content-Disposition or Content-Type names
 * `filename` (filename="..." or name="...") and decodes its base64 body
 * into a malloc'd buffer *out (*len set).  Errors: DM_ENOTFOUND, DM_EINVAL
 * (not base64), DM_ENOMEM. */
enum dm_status peer_message_attachment(const struct peer_message *m,
                                       const char *filename,
                                       unsigned char **out, size_t *len,
                                       struct dm_err *err);

/* SHA-256 as 64 lowercase hex digits + NUL. */
void peer_sha256_hex(const void *data, size_t len, char out[65]);

/* SHA-256 of a file's content.  Errors: DM_EIO. */
enum dm_status peer_sha256_file(const char *path, char out[65],
                                struct dm_err *err);

/* Writes len pseudo-random bytes (deterministic from seed) to path.
 * Errors: DM_EIO. */
enum dm_status peer_write_random_file(const char *path, size_t len,
                                      unsigned seed, struct dm_err *err);

#endif
