/* err.c - the shared error buffer and the status -> sysexits mapping. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

void dm_err_clear(struct dm_err *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

enum dm_status dm_err_set(struct dm_err *err, enum dm_status status,
                          const char *fmt, ...)
{
	if (err && err->msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return status;
}

const char *dm_status_str(enum dm_status status)
{
	switch (status) {
	case DM_OK:         return "ok";
	case DM_EINVAL:     return "invalid input";
	case DM_EUSAGE:     return "usage error";
	case DM_ENOTFOUND:  return "not found";
	case DM_ENOINPUT:   return "missing input";
	case DM_ECONFIG:    return "configuration error";
	case DM_EPERM:      return "not permitted";
	case DM_EIO:        return "I/O error";
	case DM_ENOMEM:     return "out of memory";
	case DM_ECRYPTO:    return "cryptographic failure";
	case DM_ENET:       return "network error";
	case DM_ETIMEOUT:   return "timed out";
	case DM_ETLS:       return "TLS failure";
	case DM_EPROTO:     return "protocol error";
	case DM_EAUTH:      return "authentication failed";
	case DM_ETEMPFAIL:  return "temporary failure";
	case DM_EPERMFAIL:  return "permanent failure";
	case DM_EBUSY:      return "busy";
	case DM_ECANCELED:  return "cancelled";
	}
	return "unknown error";
}

int dm_status_exit(enum dm_status status)
{
	switch (status) {
	case DM_OK:         return EX_OK;
	case DM_EINVAL:     return EX_DATAERR;      /* 65 */
	case DM_EUSAGE:     return EX_USAGE;        /* 64 */
	case DM_ENOTFOUND:  return EX_DATAERR;
	case DM_ENOINPUT:   return EX_NOINPUT;      /* 66 */
	case DM_ECONFIG:    return EX_CONFIG;       /* 78 */
	case DM_EPERM:      return EX_NOPERM;       /* 77 */
	case DM_EIO:        return EX_IOERR;        /* 74 */
	case DM_ENOMEM:     return EX_OSERR;        /* 71 */
	case DM_ECRYPTO:    return EX_SOFTWARE;     /* 70 */
	case DM_ENET:       return EX_TEMPFAIL;     /* 75 */
	case DM_ETIMEOUT:   return EX_TEMPFAIL;
	case DM_ETLS:       return EX_UNAVAILABLE;  /* 69 */
	case DM_EPROTO:     return EX_PROTOCOL;     /* 76 */
	case DM_EAUTH:      return EX_NOPERM;       /* 77 */
	case DM_ETEMPFAIL:  return EX_TEMPFAIL;
	case DM_EPERMFAIL:  return EX_UNAVAILABLE;
	case DM_EBUSY:      return EX_TEMPFAIL;
	case DM_ECANCELED:  return EX_TEMPFAIL;     /* work stopped, not failed */
	}
	return EX_SOFTWARE;
}
