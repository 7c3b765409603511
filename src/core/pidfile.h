/*
 * pidfile.h - the daemon's PID file and single-instance lock.
 *
 * ROOT/devmaild.pid holds the PID of the devmaild that serves that data
 * root, and that process holds a POSIX write lock (fcntl F_SETLK) on the
 * whole file for as long as it runs.  The kernel drops the lock when the
 * process ends, however it ends (SIGKILL, crash), so a stale file never
 * blocks a new daemon and never makes a dead one look alive.
 *
 * Why fcntl and not flock(): F_GETLK asks "who holds it?" without taking
 * the lock and answers with the holder's PID from the kernel.  A flock()
 * probe would have to take the lock for a moment, and a daemon starting in
 * that moment would refuse to start.  The price of POSIX locks is that
 * closing ANY descriptor of the file in the holding process drops the lock:
 * only this module opens the file, and a holder never opens it twice.
 */
#ifndef DEVMAIL_CORE_PIDFILE_H
#define DEVMAIL_CORE_PIDFILE_H

#include <sys/types.h>
#include "core/err.h"

/* The daemon's file, relative to the data root. */
#define PIDFILE_DAEMON "devmaild.pid"

struct pidfile;

/* Creates (mode 0644) or opens `path`, takes the lock without waiting and
 * writes "<pid>\n" into it (fsynced).  *out is owned by the caller and
 * released with pidfile_release().  When another process holds the lock:
 * DM_EBUSY, *holder (may be NULL) receives its PID and the message names
 * it.  Errors: DM_EBUSY, DM_EIO (message names the file), DM_ENOMEM.
 * A file unlinked by its previous holder between our open and our lock is
 * noticed (inode compared with the path) and opened again. */
enum dm_status pidfile_acquire(const char *path, struct pidfile **out,
                               pid_t *holder, struct dm_err *err);

/* Removes the file, then drops the lock (close).  NULL is fine.  Only the
 * process that acquired it may call this. */
void pidfile_release(struct pidfile *pf);

/* The PID of the process holding the lock on `path`: > 0 when one does,
 * 0 when none does (or the file does not exist), -1 when it cannot be
 * told (errno set).  Never takes the lock.  In the holding process itself
 * this says 0 (POSIX locks do not conflict with their owner). */
pid_t pidfile_holder(const char *path);

/* pidfile_holder() of ROOT/devmaild.pid: the devmaild serving `root`,
 * 0 when none does (also when it cannot be told). */
pid_t pidfile_daemon_pid(const char *root);

#endif
