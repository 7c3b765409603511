/*
 * err.h - the error model shared by every devmail module.
 *
 * Functions return an `enum dm_status` (0 is success).  Detail goes into a
 * caller-owned `struct dm_err`, filled once: the first (innermost) diagnosis
 * wins, later calls to dm_err_set() on the same buffer are ignored, so a
 * caller can add context only where the callee said nothing.
 * A NULL `struct dm_err *` is always allowed and means "no detail wanted".
 * sysexits codes exist only at the command-line edge (dm_status_exit()).
 */
#ifndef DEVMAIL_CORE_ERR_H
#define DEVMAIL_CORE_ERR_H

#include <stddef.h>

enum dm_status {
	DM_OK = 0,
	DM_EINVAL,      /* bad input data (value, address, header, file format) */
	DM_EUSAGE,      /* bad command usage */
	DM_ENOTFOUND,   /* unknown key, missing item */
	DM_ENOINPUT,    /* missing input file (attachment, import file) */
	DM_ECONFIG,     /* configuration missing or unusable */
	DM_EPERM,       /* permission / policy refusal (key file mode, sealed key) */
	DM_EIO,         /* local I/O failure (disk, database) */
	DM_ENOMEM,      /* allocation failed or a hard cap was hit */
	DM_ECRYPTO,     /* sealing / unsealing / TLS library failure, tampering */
	DM_ENET,        /* name resolution, connect, network I/O */
	DM_ETIMEOUT,    /* a step took longer than allowed */
	DM_ETLS,        /* TLS handshake or certificate verification failed */
	DM_EPROTO,      /* the peer violated the protocol */
	DM_EAUTH,       /* authentication failed or impossible */
	DM_ETEMPFAIL,   /* server refused temporarily (4xx) */
	DM_EPERMFAIL,   /* server refused permanently (5xx) */
	DM_EBUSY,       /* locked by another process */
	DM_ECANCELED,   /* the caller cancelled the operation (shutdown) */
};

#define DM_ERR_TEXT 512

struct dm_err {
	char msg[DM_ERR_TEXT];   /* our diagnosis; empty when unset */
	int smtp_code;           /* server reply code, 0 when none */
	char enhanced[16];       /* server's enhanced status code "5.7.8", or "" */
	char server_text[DM_ERR_TEXT]; /* server's reply text, or "" */
};

/* Clears the buffer (NULL allowed). */
void dm_err_clear(struct dm_err *err);

/* Formats msg if err is non-NULL and msg is still empty; returns `status`
 * so that callers can write `return dm_err_set(err, DM_EINVAL, "...")`. */
enum dm_status dm_err_set(struct dm_err *err, enum dm_status status,
                          const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Short name of a status, e.g. "invalid input". Never NULL. */
const char *dm_status_str(enum dm_status status);

/* The sysexits.h code for a status (only the command-line edge uses this). */
int dm_status_exit(enum dm_status status);

#endif
