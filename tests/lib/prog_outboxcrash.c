/*
 * outboxcrash - crash driver for the outbox (tests/unit/test_outbox.c).
 *
 *   outboxcrash run ROOT SINK SEED COUNT KILL
 *       Enqueues COUNT generated messages (a copy of each is written first
 *       to ROOT/orig/<seq>; odd seqs have two recipients) and delivers the
 *       due ones after every third and at the end, in batches
 *       (outbox_deliver_due with a deliverer).  The deliverer plays the
 *       server: it appends a record "REC <id> <len> <rcpt>[,<rcpt>]\n
 *       <bytes>\n" to SINK and fsyncs it, and on the first attempt refuses
 *       temporarily every message with seq % 4 == 1, permanently seq % 6 ==
 *       4 (-> failed/), and accepts seq % 5 == 3 for its first recipient
 *       only (450 for the second: the message stays queued for it).
 *       KILL says where the process SIGKILLs itself: N (> 0) at the N-th
 *       outbox step (struct outbox_options.step), NAME or NAME@N at the
 *       first (N-th) step called NAME; 0 means never (the test may kill it
 *       from outside instead).
 *   outboxcrash finish ROOT SINK
 *       Opens the spool (cleaning tmp/), makes everything due and delivers
 *       all of it (outbox_deliver, one call per message), accepting every
 *       message for every recipient it still has.
 *
 * Progress markers on stdout, one write(2) per line so that none is lost
 * or torn when the process is killed:
 *   begin <seq>                 about to call outbox_enqueue
 *   queued <seq> <id>           outbox_enqueue returned the id
 *   accepting <id>              the "server" starts taking the message
 *   accepted <id>               the record is in SINK and fsynced
 *   step <n> <name> <id>        the outbox finished a step
 *   done                        the mode completed
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/outbox.h"

struct crash {
	const char *sink;
	long killstep;           /* kill at this step number, 0: see killname */
	char killname[32];       /* kill at the killnth step of this name */
	long killnth;
	long steps, named;
	bool finish;
	uint64_t rng;
};

static void mark(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mark(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(1, line, (size_t)n);
	(void)w;
}

static void die(const char *what, const struct dm_err *err)
{
	mark("error %s: %s", what, err ? err->msg : strerror(errno));
	exit(1);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void on_step(void *ctx, const char *step, const char *id)
{
	struct crash *c = ctx;
	c->steps++;
	mark("step %ld %s %s", c->steps, step, id);
	if (c->killstep > 0 && c->steps == c->killstep)
		raise(SIGKILL);
	if (c->killname[0] && !strcmp(step, c->killname) && ++c->named == c->killnth)
		raise(SIGKILL);
}

/* Generated message: a few headers (X-Seq names it) and a body whose size
 * ranges from a few bytes to ~300 KB, so that some cross many chunks. */
static char *gen_message(uint64_t seed, unsigned seq, size_t *len)
{
	uint64_t r = seed * 1000003u + seq + 1;
	size_t cap, n;
	char *buf;

	rng_next(&r);
	size_t lines = (size_t)(rng_next(&r) % 5 == 0 ? rng_next(&r) % 4000
	                                               : rng_next(&r) % 40);
	cap = 512 + lines * 80;
	buf = malloc(cap);
	if (!buf)
		return NULL;
	n = (size_t)snprintf(buf, cap,
	    "From: device@example.com\r\nTo: ops@example.com\r\n"
	    "Subject: crash test %u\r\nX-Seq: %u\r\n\r\n", seq, seq);
	for (size_t i = 0; i < lines; i++)
		n += (size_t)snprintf(buf + n, cap - n, "line %zu %016" PRIx64 "%016" PRIx64 "\r\n",
		                      i, rng_next(&r), rng_next(&r));
	*len = n;
	return buf;
}

struct memsrc {
	const char *p;
	size_t len, off;
	uint64_t rng;
};

static enum dm_status memsrc_read(void *ctx, char *buf, size_t cap, size_t *got,
                                  struct dm_err *err)
{
	struct memsrc *m = ctx;
	size_t n = m->len - m->off;
	size_t lim = 1 + (size_t)(rng_next(&m->rng) % 9000);
	(void)err;
	if (n > cap)
		n = cap;
	if (n > lim)
		n = lim;
	memcpy(buf, m->p + m->off, n);
	m->off += n;
	*got = n;
	return DM_OK;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write", NULL);
		p += w;
		len -= (size_t)w;
	}
}

/* Reads the whole message into *out (malloc'd). */
static enum dm_status read_all(const struct outbox_item *item,
                               const struct mail_source *msg, char **out,
                               size_t *outlen, struct dm_err *err)
{
	size_t cap = (size_t)item->size + 1, len = 0;
	char *buf = malloc(cap + 1);
	enum dm_status st;

	if (!buf)
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	for (;;) {
		size_t got = 0;
		st = msg->read(msg->ctx, buf + len, cap - len, &got, err);
		if (st != DM_OK) {
			free(buf);
			return st;
		}
		if (got == 0)
			break;
		len += got;
		if (len == cap) {
			free(buf);
			return dm_err_set(err, DM_EINVAL, "message longer than its size");
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return DM_OK;
}

/* The "server" takes the message for recipients 0..nrcpt-1 of the item. */
static void sink_record(struct crash *c, const struct outbox_item *item,
                        size_t nrcpt, const char *buf, size_t len)
{
	char head[1024];
	mark("accepting %s", item->id);
	int fd = open(c->sink, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open sink", NULL);
	int hn = snprintf(head, sizeof(head), "REC %s %zu ", item->id, len);
	for (size_t k = 0; k < nrcpt && hn > 0 && (size_t)hn < sizeof(head) - 320; k++)
		hn += snprintf(head + hn, sizeof(head) - (size_t)hn, "%s%s",
		               k ? "," : "", item->rcpt[k]);
	head[hn++] = '\n';
	write_all(fd, head, (size_t)hn);
	write_all(fd, buf, len);
	write_all(fd, "\n", 1);
	if (fsync(fd) != 0)
		die("fsync sink", NULL);
	close(fd);
	mark("accepted %s", item->id);
}

static unsigned seq_of(const char *buf)
{
	const char *x = strstr(buf, "X-Seq: ");
	return x ? (unsigned)strtoul(x + 7, NULL, 10) : 0;
}

/* finish mode: one call per message, everything accepted. */
static enum dm_status deliver(void *ctx, const struct outbox_item *item,
                              const struct mail_source *msg, char *detail,
                              size_t detail_cap, struct dm_err *err)
{
	struct crash *c = ctx;
	char *buf;
	size_t len;
	enum dm_status st = read_all(item, msg, &buf, &len, err);

	if (st != DM_OK)
		return st;
	sink_record(c, item, item->nrcpt, buf, len);
	snprintf(detail, detail_cap, "via sink, seq %u", seq_of(buf));
	free(buf);
	return DM_OK;
}

/* run mode: one outcome per message as submit would set it. */
static void deliver_one(struct crash *c, const struct outbox_item *item,
                        const struct mail_source *msg, struct outbox_outcome *o)
{
	static const int partial_codes[2] = { 250, 450 };
	struct verdict_input in = { .phase = VERDICT_MESSAGE };
	char *buf;
	size_t len;

	o->status = read_all(item, msg, &buf, &len, &o->err);
	if (o->status != DM_OK) {
		in.status = o->status;
		verdict_decide(&in, &o->verdict, NULL);
		return;
	}
	unsigned seq = seq_of(buf);
	bool first = item->attempts == 0;
	if (first && seq % 4 == 1) {
		o->err.smtp_code = in.code = 451;
		snprintf(o->err.enhanced, sizeof(o->err.enhanced), "4.3.0");
		snprintf(o->err.server_text, sizeof(o->err.server_text), "try again later");
		o->status = in.status = dm_err_set(&o->err, DM_ETEMPFAIL,
		                                   "RCPT refused temporarily");
	} else if (first && seq % 6 == 4) {
		o->err.smtp_code = in.code = 550;
		snprintf(o->err.enhanced, sizeof(o->err.enhanced), "5.1.1");
		snprintf(o->err.server_text, sizeof(o->err.server_text), "no such user");
		o->status = in.status = dm_err_set(&o->err, DM_EPERMFAIL, "RCPT refused");
	} else if (first && seq % 5 == 3 && item->nrcpt == 2) {
		sink_record(c, item, 1, buf, len);
		in.rcpt_code = partial_codes;
		in.nrcpt = 2;
		dm_err_set(&o->err, DM_ETEMPFAIL, "recipient %s refused for now",
		           item->rcpt[1]);
		o->err.smtp_code = 450;
	} else {
		sink_record(c, item, item->nrcpt, buf, len);
	}
	free(buf);
	verdict_decide(&in, &o->verdict, o->retry);
	snprintf(o->detail, sizeof(o->detail), "via sink, seq %u", seq);
}

static void deliver_batch(void *ctx, const struct outbox_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		deliver_one(ctx, &b->items[i], &b->msgs[i], &b->out[i]);
}

int main(int argc, char **argv)
{
	struct crash c = { 0 };
	struct outbox_options opt = { 0 };
	struct outbox *ob;
	struct dm_err err;
	const char *root;

	if (argc == 7 && !strcmp(argv[1], "run")) {
		const char *k = argv[6];
		if (*k >= '0' && *k <= '9') {
			c.killstep = atol(k);
		} else {
			const char *at = strchr(k, '@');
			size_t n = at ? (size_t)(at - k) : strlen(k);
			snprintf(c.killname, sizeof(c.killname), "%.*s", (int)n, k);
			c.killnth = at ? atol(at + 1) : 1;
		}
	} else if (argc == 4 && !strcmp(argv[1], "finish")) {
		c.finish = true;
	} else {
		fprintf(stderr, "usage: outboxcrash run ROOT SINK SEED COUNT KILL\n"
		                "       outboxcrash finish ROOT SINK\n");
		return 2;
	}
	root = argv[2];
	c.sink = argv[3];
	opt.step = on_step;
	opt.hook_ctx = &c;
	struct outbox_deliverer batch = { .deliver = deliver_batch, .ctx = &c };
	dm_err_clear(&err);
	if (outbox_open(root, &opt, &ob, &err) != DM_OK)
		die("open", &err);

	if (!c.finish) {
		uint64_t seed = strtoull(argv[4], NULL, 10);
		unsigned count = (unsigned)atoi(argv[5]);
		char dir[4200], path[4300];
		snprintf(dir, sizeof(dir), "%s/orig", root);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			die("mkdir orig", NULL);
		for (unsigned seq = 0; seq < count; seq++) {
			size_t len;
			char *m = gen_message(seed, seq, &len);
			if (!m)
				die("gen", NULL);
			snprintf(path, sizeof(path), "%s/%u", dir, seq);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0)
				die("open orig", NULL);
			write_all(fd, m, len);
			close(fd);
			const char *rcpt[] = { "ops@example.com", "backup@example.com" };
			struct outbox_envelope env = { .from = "device@example.com", .rcpt = rcpt,
			                               .nrcpt = 1 + seq % 2 };
			struct memsrc ms = { m, len, 0, seed + seq + 7 };
			struct mail_source src = { memsrc_read, &ms };
			char id[OUTBOX_ID_MAX];
			mark("begin %u", seq);
			dm_err_clear(&err);
			if (outbox_enqueue(ob, &env, &src, id, &err) != DM_OK)
				die("enqueue", &err);
			mark("queued %u %s", seq, id);
			free(m);
			if (seq % 3 == 2) {
				dm_err_clear(&err);
				if (outbox_deliver_due(ob, &batch, NULL, &err) != DM_OK)
					die("deliver", &err);
			}
		}
	}
	dm_err_clear(&err);
	if (outbox_retry_now(ob, NULL, NULL, &err) != DM_OK)
		die("retry", &err);
	dm_err_clear(&err);
	if (outbox_deliver(ob, NULL, deliver, &c, NULL, &err) != DM_OK)
		die("deliver", &err);
	outbox_close(ob);
	mark("done");
	return 0;
}
