/*
 * submit_int.h - what the submit files share (not a public API):
 * submit.c (registry glue, enqueue of built messages, entry points, exit
 * statuses), submit_raw.c (raw RFC 5322 import), submit_send.c (delivery
 * over SMTP sessions).
 */
#ifndef DEVMAIL_MAIL_SUBMIT_INT_H
#define DEVMAIL_MAIL_SUBMIT_INT_H

#include "mail/submit.h"

/* A registry default that must be set: DM_ECONFIG naming the key. */
enum dm_status submit_reg_required(struct registry *reg, const char *key,
                                   const char *what, char *out, size_t cap,
                                   struct dm_err *err);

/* DM_OK when the account (Email/...) loads; else account_load()'s error. */
enum dm_status submit_account_check(struct registry *reg, const char *root,
                                    struct dm_err *err);

/* ---- submit_send.c: one delivery run ------------------------------------- */

/* A run delivers through `sessions` SMTP sessions at most (one per worker
 * thread), each kept open across the outbox's batches, with the account's
 * settings `smtp` (copied; its strings must outlive the run) and the
 * caller's hooks (may be NULL; their cancel goes into every session).
 * It reports each message once, through hooks->report, serialised, and
 * stores the last lines of the dialogue of each message that goes to
 * spool/failed in `ob` (each worker records its own session's lines). */
struct submit_run;

enum dm_status submit_run_new(const struct submit_hooks *h,
                              const struct smtp_settings *smtp,
                              struct outbox *ob, struct submit_run **out,
                              struct dm_err *err);
void submit_run_free(struct submit_run *run);

/* Drains the queue (outbox_drain_open(ob, flags, ...)) with up to
 * `sessions` workers (threads), adding the totals to *stats (may be
 * NULL); again, over the same open sessions, while hooks->more says so
 * (not with OUTBOX_DRAIN_ALL, not once cancelled or a session could not
 * be had).  Returns the first local error of a worker, else DM_OK. */
enum dm_status submit_run_drain(struct submit_run *run, struct outbox *ob,
                                unsigned flags, unsigned sessions,
                                struct outbox_stats *stats, struct dm_err *err);

/* Delivers one queued id now (outbox_deliver_one); returns its status as
 * outbox_deliver_one() does. */
enum dm_status submit_run_one(struct submit_run *run, struct outbox *ob,
                              const char *id, struct outbox_stats *stats,
                              struct dm_err *err);

/* Reports made so far, and a copy of the first (NULL when none). */
size_t submit_run_reports(const struct submit_run *run);
const struct submit_report *submit_run_first(const struct submit_run *run);

#endif
