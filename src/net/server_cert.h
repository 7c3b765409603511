/*
 * server_cert.h - the certificate and key a server (web, Telnet, FTP, the
 * tests' own SMTP-ish servers) presents in the TLS server handshake.
 *
 * Either the operator's files (server_cert_load), or the unit's own
 * certificate under the data root's tls/ (server_cert_ensure): generated on
 * first use as an ECDSA P-256 self-signed certificate for the host name and
 * the unit's addresses, and reused on every later start, so a client that
 * pinned its fingerprint keeps trusting it.  The fingerprint (SHA-256,
 * lowercase hex with colons, the format of transport_tls_info.fingerprint
 * and Email/Fingerprint) is what the web page and the console show for
 * pinning.
 *
 * A handle is reference counted: listeners and the transports they accept
 * take their own reference, so server_cert_free() may come before they are
 * closed.
 */
#ifndef DEVMAIL_NET_SERVER_CERT_H
#define DEVMAIL_NET_SERVER_CERT_H

#include <stdbool.h>
#include "core/err.h"

struct server_cert;

/* Files under the data root (paths.h). */
#define SERVER_CERT_DIR "tls"
#define SERVER_CERT_FILE "tls/cert.pem"
#define SERVER_CERT_KEY_FILE "tls/key.pem"
#define SERVER_CERT_FILE_MAX (256 * 1024)   /* a PEM file larger is refused */
#define SERVER_CERT_LOCK_MS 10000           /* wait for tls/.lock at most */

/* Loads a PEM certificate (leaf first, then the chain) and its PEM private
 * key from the operator's files (symbolic links followed).  The caller owns
 * the handle.  Errors: DM_ENOINPUT (a file is missing), DM_EIO (unreadable),
 * DM_ECONFIG (not PEM, key does not match, too large), DM_ENOMEM. */
enum dm_status server_cert_load(const char *cert_file, const char *key_file,
                                struct server_cert **out, struct dm_err *err);

/* The unit's own certificate: loads root/tls/cert.pem and root/tls/key.pem,
 * or, when there are none yet (or only a key left by a crash between the
 * two writes), generates them: ECDSA P-256, self-signed, CN host_name, DNS
 * SANs host_name and "localhost", IP SANs every address of the unit's up
 * interfaces (core/netinfo: loopback included, so 127.0.0.1 and ::1
 * verify).  host_name NULL or "": the system host name.  tls/ is made 0700;
 * the key is written 0600 from its creation (temp file O_EXCL, fsync,
 * rename: paths_write_atomic), before the certificate; concurrent callers
 * (several servers starting at once) are serialised by flock() on
 * tls/.lock, bounded to SERVER_CERT_LOCK_MS, so exactly one generates and
 * all load the same pair.  An existing key that group or others may read is
 * refused, as the vault key is.  Addresses that change later are not
 * added: the certificate is reused as it is (pins keep working); delete
 * both files to have a new one made.  The caller owns the handle.
 * Errors: DM_ECONFIG (cert.pem without key.pem, damaged files), DM_EPERM
 * (key readable by others), DM_EBUSY (lock not obtained in time), DM_EIO,
 * DM_ECRYPTO, DM_ENOMEM. */
enum dm_status server_cert_ensure(const char *root, const char *host_name,
                                  struct server_cert **out,
                                  struct dm_err *err);

/* SHA-256 of the certificate ("ab:cd:...", 95 characters).  Never NULL;
 * valid while the handle is. */
const char *server_cert_fingerprint(const struct server_cert *c);

/* True when server_cert_ensure() generated the pair in this call (a
 * daemon logs the new fingerprint). */
bool server_cert_created(const struct server_cert *c);

/* The fingerprint of root/tls/cert.pem without loading the key (a console
 * in another process than the servers).  out has CRYPTO_FINGERPRINT_LEN
 * (96) bytes.  Errors: DM_ENOTFOUND (not generated yet), DM_EIO,
 * DM_ECONFIG (not a certificate). */
enum dm_status server_cert_file_fingerprint(const char *root, char *out,
                                            struct dm_err *err);

/* Drops the caller's reference; the last one frees.  NULL ok. */
void server_cert_free(struct server_cert *c);

#endif
