/* dialogue.c - attribute a session's SMTP transcript to failed messages
 * (see dialogue.h). */
#include "mail/dialogue.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail/outbox.h"

struct dialogue_snap {
	bool session;            /* an "error:" note, not a message */
	bool used;
	char diag[DM_ERR_TEXT];
	size_t n;
	char line[DIALOGUE_SNAP_LINES][OUTBOX_DIALOGUE_LINE_MAX];
};

struct dialogue {
	char ring[DIALOGUE_RING][OUTBOX_DIALOGUE_LINE_MAX];
	size_t total;            /* lines seen this run */
	struct dialogue_snap *snap[DIALOGUE_SNAPS];
	size_t nsnap;
};

struct dialogue *dialogue_new(void)
{
	return calloc(1, sizeof(struct dialogue));
}

void dialogue_reset(struct dialogue *d)
{
	for (size_t i = 0; i < d->nsnap; i++)
		free(d->snap[i]);
	d->nsnap = 0;
	d->total = 0;
}

void dialogue_free(struct dialogue *d)
{
	if (!d)
		return;
	dialogue_reset(d);
	free(d);
}

/* The last n lines of the ring, oldest first, into snap. */
static void dialogue_take(struct dialogue *d, struct dialogue_snap *s)
{
	size_t n = d->total < DIALOGUE_SNAP_LINES ? d->total : DIALOGUE_SNAP_LINES;

	s->n = n;
	for (size_t i = 0; i < n; i++)
		memcpy(s->line[i], d->ring[(d->total - n + i) % DIALOGUE_RING],
		       OUTBOX_DIALOGUE_LINE_MAX);
}

/* "message 12 not sent: why" -> "why"; NULL for other lines. */
static const char *dialogue_msg_note(const char *line)
{
	static const char pre[] = "message ", mid[] = " not sent: ";

	if (strncmp(line, pre, sizeof(pre) - 1) != 0)
		return NULL;
	const char *p = line + sizeof(pre) - 1;
	if (*p < '0' || *p > '9')
		return NULL;
	while (*p >= '0' && *p <= '9')
		p++;
	if (strncmp(p, mid, sizeof(mid) - 1) != 0)
		return NULL;
	return p + sizeof(mid) - 1;
}

void dialogue_line(struct dialogue *d, enum smtp_dir dir, const char *line)
{
	const char *pre = dir == SMTP_DIR_CLIENT ? ">>> " :
	                  dir == SMTP_DIR_SERVER ? "<<< " : "--- ";

	snprintf(d->ring[d->total % DIALOGUE_RING], OUTBOX_DIALOGUE_LINE_MAX,
	         "%s%s", pre, line);
	d->total++;
	if (dir != SMTP_DIR_INFO || d->nsnap == DIALOGUE_SNAPS)
		return;
	const char *diag = dialogue_msg_note(line);
	bool session = false;
	if (!diag && strncmp(line, "error: ", 7) == 0) {
		diag = line + 7;
		session = true;
	}
	if (!diag)
		return;
	struct dialogue_snap *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	s->session = session;
	snprintf(s->diag, sizeof(s->diag), "%s", diag);
	dialogue_take(d, s);
	d->snap[d->nsnap++] = s;
}

static size_t dialogue_view(const struct dialogue_snap *s,
                            const char **out, size_t max)
{
	size_t n = s->n < max ? s->n : max;
	size_t from = s->n - n;

	for (size_t i = 0; i < n; i++)
		out[i] = s->line[from + i];
	return n;
}

size_t dialogue_for_failure(struct dialogue *d, const char *diag,
                            const char **out, size_t max)
{
	struct dialogue_snap *last_session = NULL;

	for (size_t i = 0; i < d->nsnap; i++) {
		struct dialogue_snap *s = d->snap[i];
		if (s->session) {
			last_session = s;
			continue;
		}
		if (!s->used && diag && strcmp(s->diag, diag) == 0) {
			s->used = true;
			return dialogue_view(s, out, max);
		}
	}
	if (last_session)
		return dialogue_view(last_session, out, max);
	/* The ring tail. */
	size_t n = d->total < DIALOGUE_SNAP_LINES ? d->total : DIALOGUE_SNAP_LINES;
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		out[i] = d->ring[(d->total - n + i) % DIALOGUE_RING];
	return n;
}
