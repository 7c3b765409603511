/*
 * dialogue.h - which lines of an SMTP session belong to which failed
 * message, so that the last lines of "its dialogue" are kept with a
 * failed message (outbox_dialogue_save) and shown by OUTBOX -f ID.
 *
 * The delivery path (mail/submit_send.c) keeps one recorder per session
 * worker, so parallel sessions never mix their lines, and hands every
 * transcript line of its session to dialogue_line().  The engine
 * (mail/smtp.c) notes each message it gives up on as
 *   "message N not sent: <diagnosis>"
 * and a session failure as "error: <diagnosis>".  At such a note the
 * recorder takes a snapshot of the last DIALOGUE_SNAP_LINES lines.  When
 * the outbox has applied a batch, for each message that went to
 * spool/failed with diagnosis D, dialogue_for_failure() hands out the
 * first unused message snapshot noted with D, else the last session
 * snapshot (a message that expired while the server could not be
 * reached), else the last lines recorded; the worker then forgets the
 * batch (dialogue_reset()).
 *
 * Attribution by the engine's own notes, in the order the messages were
 * sent: with PIPELINING the lines of the next message can appear before a
 * note, which is why a snapshot holds the lines up to the note.
 *
 * One recorder per session worker; not thread-safe.
 */
#ifndef DEVMAIL_MAIL_DIALOGUE_H
#define DEVMAIL_MAIL_DIALOGUE_H

#include <stddef.h>
#include "mail/smtp.h"

#define DIALOGUE_RING 64         /* lines of the run kept */
#define DIALOGUE_SNAP_LINES 16   /* lines kept per snapshot */
#define DIALOGUE_SNAPS 128       /* snapshots per run (more: ring tail) */

struct dialogue;

/* NULL when out of memory (then no dialogue is stored). */
struct dialogue *dialogue_new(void);
void dialogue_free(struct dialogue *d);

/* Forgets everything (lines and snapshots). */
void dialogue_reset(struct dialogue *d);

/* One transcript line (smtp_transcript_fn's arguments); kept with a
 * ">>> ", "<<< " or "--- " prefix, cut to OUTBOX_DIALOGUE_LINE_MAX. */
void dialogue_line(struct dialogue *d, enum smtp_dir dir, const char *line);

/* Up to `max` lines (oldest first) for a message that failed with
 * diagnosis `diag` (the report's err.msg); the pointers stay valid until
 * the next dialogue_line() or dialogue_reset().  Returns the count (0
 * when nothing was recorded). */
size_t dialogue_for_failure(struct dialogue *d, const char *diag,
                            const char **out, size_t max);

#endif
