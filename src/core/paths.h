/*
 * paths.h - the data root of a unit and the files under it.
 *
 * The root is chosen as: the --root option, else $DEVMAIL_ROOT, else
 * /var/lib/devmail for root and $XDG_STATE_HOME/devmail (default
 * ~/.local/state/devmail) otherwise.  Layout below the root:
 *   registry.db  vault.key  spool/  log/system.log  tls/
 */
#ifndef DEVMAIL_CORE_PATHS_H
#define DEVMAIL_CORE_PATHS_H

#include <stddef.h>
#include "core/err.h"

#define DM_PATH_MAX 4096

/* Resolves the data root into out[cap].  `cli_root` may be NULL. */
enum dm_status paths_root(const char *cli_root, char *out, size_t cap,
                          struct dm_err *err);

/* Creates the root (mode 0700) when missing.  Its subdirectories are
 * created by their owners when first needed (outbox_open: spool/; the
 * log: log/; server_cert: tls/). */
enum dm_status paths_ensure(const char *root, struct dm_err *err);

/* Joins root and a relative name ("log/system.log") into out[cap]. */
enum dm_status paths_join(const char *root, const char *rel, char *out,
                          size_t cap, struct dm_err *err);

/* mkdir -p with the given mode; existing directories are fine (one stat()
 * when the whole path exists). */
enum dm_status paths_mkdirs(const char *dir, unsigned mode, struct dm_err *err);

/* Durable file write: temp file in the same directory, write, fsync,
 * rename over `path`, fsync the directory.  `mode` applies to the new file.
 * The temp file is "<path>.tmp.<16 random hex digits>", created with
 * O_EXCL | O_NOFOLLOW (a planted file or symbolic link is never written
 * through; a taken name is retried, 16 times at most).  A symbolic link at
 * `path` itself is replaced, not followed.  Errors: DM_EINVAL (path too
 * long), DM_EIO (create, write, fsync, rename). */
enum dm_status paths_write_atomic(const char *path, const void *data,
                                  size_t len, unsigned mode,
                                  struct dm_err *err);

/* Writes data[len] to fd completely: retries after EINTR and short writes.
 * Returns 0, or the errno value of the failure (EIO when write(2) wrote
 * nothing); a syscall-level helper, so each caller words its own error
 * message and does its own cleanup. */
int paths_write_all(int fd, const void *data, size_t len);

/* fsyncs the directory holding `path` (or `path` itself if a directory). */
enum dm_status paths_fsync_dir(const char *dir, struct dm_err *err);

#endif
