/*
 * dm_bench.c - drives the devmail SMTP library directly for bench/run:
 * open one client, send N messages over that session, close.  No registry,
 * no console: the numbers measure the mail engine, transport and builder.
 *
 *   dm_bench --host H --port P (--starttls | --smtps) --cafile CA
 *            --user U --password-file F --from ADDR --to ADDR
 *            (--raw FILE | --attach FILE | --body-bytes N) [--count N]
 *            [--mechanism M] [--no-pipeline-auth] [--no-chunking] [--verbose]
 *
 * --raw FILE     sends FILE (an RFC 5322 message, CRLF) as it is, each time
 * --attach FILE  builds a MIME message with FILE attached (streamed: read and
 *                base64-encoded chunk by chunk as it is sent)
 * --body-bytes N builds a text message with an N-byte body (default 1024)
 * --no-pipeline-auth  leaves smtp_settings.pipeline_auth off (the library
 *                default): AUTH is answered before smtp_client_open()
 *                returns instead of leading the first MAIL group
 * --no-chunking  sends with DATA even when the server offers CHUNKING
 *                (smtp_settings.no_chunking): BDAT against DATA on Postfix
 * The password is read from a file (never argv) and wiped after the session
 * opened.  Prints one summary line; exit 0 when every message was accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/vault.h"
#include "mail/message.h"
#include "mail/smtp.h"

#define DM_BENCH_BATCH 32        /* messages per smtp_client_send() call */
#define DM_BENCH_PASS_MAX 1024

struct dm_bench_opts {
	const char *host, *cafile, *user, *password_file, *from, *to;
	const char *raw, *attach, *mechanism;
	unsigned port;
	bool starttls, smtps, verbose, no_pipeline_auth, no_chunking;
	size_t body_bytes;
	long count;
};

/* A file read with pread at its own offset, so that every envelope of a
 * batch can share one fd. */
struct dm_bench_raw {
	int fd;
	off_t off;
};

static enum dm_status dm_bench_raw_read(void *ctx, char *buf, size_t cap,
                                        size_t *got, struct dm_err *err)
{
	struct dm_bench_raw *r = ctx;
	for (;;) {
		ssize_t n = pread(r->fd, buf, cap, r->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return dm_err_set(err, DM_EIO, "read message file: %s", strerror(errno));
		r->off += n;
		*got = (size_t)n;
		return DM_OK;
	}
}

static long dm_bench_ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void dm_bench_usage(void)
{
	fprintf(stderr,
	        "usage: dm_bench --host H --port P (--starttls|--smtps) --cafile CA --user U\n"
	        "                --password-file F --from ADDR --to ADDR\n"
	        "                (--raw FILE | --attach FILE | --body-bytes N) [--count N]\n"
	        "                [--mechanism M] [--no-pipeline-auth] [--no-chunking]\n"
	        "                [--verbose]\n");
	exit(64);
}

static void dm_bench_parse(int argc, char **argv, struct dm_bench_opts *o)
{
	memset(o, 0, sizeof *o);
	o->count = 1;
	o->body_bytes = 1024;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
#define DM_BENCH_VAL() (has ? argv[++i] : (dm_bench_usage(), ""))
		if (!strcmp(a, "--host")) o->host = DM_BENCH_VAL();
		else if (!strcmp(a, "--port")) o->port = (unsigned)strtoul(DM_BENCH_VAL(), NULL, 10);
		else if (!strcmp(a, "--starttls")) o->starttls = true;
		else if (!strcmp(a, "--smtps")) o->smtps = true;
		else if (!strcmp(a, "--cafile")) o->cafile = DM_BENCH_VAL();
		else if (!strcmp(a, "--user")) o->user = DM_BENCH_VAL();
		else if (!strcmp(a, "--password-file")) o->password_file = DM_BENCH_VAL();
		else if (!strcmp(a, "--from")) o->from = DM_BENCH_VAL();
		else if (!strcmp(a, "--to")) o->to = DM_BENCH_VAL();
		else if (!strcmp(a, "--raw")) o->raw = DM_BENCH_VAL();
		else if (!strcmp(a, "--attach")) o->attach = DM_BENCH_VAL();
		else if (!strcmp(a, "--body-bytes")) o->body_bytes = strtoul(DM_BENCH_VAL(), NULL, 10);
		else if (!strcmp(a, "--count")) o->count = strtol(DM_BENCH_VAL(), NULL, 10);
		else if (!strcmp(a, "--mechanism")) o->mechanism = DM_BENCH_VAL();
		else if (!strcmp(a, "--verbose")) o->verbose = true;
		else if (!strcmp(a, "--no-pipeline-auth")) o->no_pipeline_auth = true;
		else if (!strcmp(a, "--no-chunking")) o->no_chunking = true;
		else dm_bench_usage();
#undef DM_BENCH_VAL
	}
	if (!o->host || !o->port || !o->from || !o->to || o->count < 1 ||
	    o->count > 1000000 || o->starttls == o->smtps || (o->raw && o->attach) ||
	    o->body_bytes > 64 * 1024 * 1024)
		dm_bench_usage();
}

/* Reads the password file into buf (trailing newline dropped). */
static bool dm_bench_password(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return false;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	return true;
}

static void dm_bench_transcript(void *ctx, enum smtp_dir dir, const char *line)
{
	(void)ctx;
	static const char *const tag[] = { "C:", "S:", "*" };
	fprintf(stderr, "%s %s\n", tag[dir], line);
}

int main(int argc, char **argv)
{
	struct dm_bench_opts o;
	dm_bench_parse(argc, argv, &o);
	struct dm_err err;
	dm_err_clear(&err);

	/* The message(s). */
	struct message *msg = NULL;
	char *body = NULL;
	int raw_fd = -1;
	if (o.raw) {
		raw_fd = open(o.raw, O_RDONLY | O_CLOEXEC);
		if (raw_fd < 0) {
			fprintf(stderr, "dm_bench: %s: %s\n", o.raw, strerror(errno));
			return 66;
		}
	} else {
		const char *to[1] = { o.to };
		struct message_attachment att = { .path = o.attach };
		struct message_spec spec = {
			.from = o.from, .to = to, .nto = 1,
			.subject = o.attach ? "devmail bench attachment" : "devmail bench",
		};
		if (o.attach) {
			spec.body = "see attachment\r\n";
			spec.body_len = strlen(spec.body);
			spec.attachments = &att;
			spec.nattachments = 1;
		} else {
			body = malloc(o.body_bytes + 1);
			if (!body)
				return 71;
			for (size_t i = 0; i < o.body_bytes; i++)
				body[i] = (i % 64 == 62) ? '\r' : (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
			spec.body = body;
			spec.body_len = o.body_bytes;
		}
		if (message_build(&spec, &msg, &err) != DM_OK) {
			fprintf(stderr, "dm_bench: message: %s\n", err.msg);
			return 65;
		}
	}

	char password[DM_BENCH_PASS_MAX] = "";
	if (o.password_file && !dm_bench_password(o.password_file, password, sizeof password)) {
		fprintf(stderr, "dm_bench: cannot read %s\n", o.password_file);
		return 66;
	}

	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	struct smtp_settings s = {
		.host = o.host, .port = o.port, .smtps = o.smtps, .starttls = o.starttls,
		.require_tls = true, .verify = true, .cafile = o.cafile,
		.timeout_ms = 30000, .helo_name = "devmail-bench",
		.username = o.user, .password = password, .mechanism = o.mechanism,
		.pipeline_auth = !o.no_pipeline_auth,
		.no_chunking = o.no_chunking,
		.transcript = o.verbose ? dm_bench_transcript : NULL,
	};
	struct smtp_client *c = NULL;
	enum dm_status st = smtp_client_open(&s, &c, &err);
	vault_wipe(password, sizeof password);
	if (st != DM_OK) {
		fprintf(stderr, "dm_bench: open: %s: %s (server: %d %s)\n", dm_status_str(st),
		        err.msg, err.smtp_code, err.server_text);
		message_free(msg);
		free(body);
		return 69;
	}

	struct smtp_envelope env[DM_BENCH_BATCH];
	struct dm_bench_raw raws[DM_BENCH_BATCH];
	struct smtp_result *res = calloc(DM_BENCH_BATCH, sizeof *res);
	if (!res) {
		smtp_client_close(c, NULL);
		return 71;
	}
	const char *rcpt[1] = { o.to };
	off_t raw_size = raw_fd >= 0 ? lseek(raw_fd, 0, SEEK_END) : 0;
	long sent = 0, failed = 0;
	for (long done = 0; done < o.count && st == DM_OK;) {
		size_t n = (size_t)(o.count - done < DM_BENCH_BATCH ? o.count - done : DM_BENCH_BATCH);
		/* The builder's source is one stream: one message per call,
		 * rewound before each. */
		if (raw_fd < 0)
			n = 1;
		for (size_t i = 0; i < n; i++) {
			memset(&env[i], 0, sizeof env[i]);
			env[i].from = o.from;
			env[i].rcpt = rcpt;
			env[i].nrcpt = 1;
			if (raw_fd >= 0) {
				raws[i].fd = raw_fd;
				raws[i].off = 0;
				env[i].body.read = dm_bench_raw_read;
				env[i].body.ctx = &raws[i];
				env[i].size = (size_t)raw_size;
			} else {
				st = message_rewind(msg, &err);
				env[i].from = message_sender(msg);
				env[i].body = message_source(msg);
				env[i].size = (size_t)message_size_estimate(msg);
				env[i].needs_8bit = message_needs_8bitmime(msg);
				env[i].needs_smtputf8 = message_needs_smtputf8(msg);
			}
		}
		if (st != DM_OK)
			break;
		bool last = done + (long)n >= o.count;
		st = smtp_client_send(c, env, n, res, last ? SMTP_SEND_QUIT : 0, &err);
		for (size_t i = 0; i < n; i++) {
			if (res[i].status == DM_OK)
				sent++;
			else
				failed++;
		}
		done += (long)n;
	}
	const struct smtp_info *info = smtp_client_info(c);
	char mech[32], tlsv[16];
	snprintf(mech, sizeof mech, "%s", info->mechanism[0] ? info->mechanism : "none");
	snprintf(tlsv, sizeof tlsv, "%s", info->tls.active ? info->tls.version : "none");
	bool pipelining = info->pipelining;
	bool bdat = info->chunking && !o.no_chunking;
	struct dm_err cerr;
	dm_err_clear(&cerr);
	smtp_client_close(c, &cerr);
	long ms = dm_bench_ms_since(&t0);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("dm_bench: sent %ld/%ld in %ld ms; tls %s, auth %s, pipelining %s, "
	       "bdat %s; maxrss %ld KiB\n", sent, o.count, ms, tlsv, mech,
	       pipelining ? "yes" : "no", bdat ? "yes" : "no", ru.ru_maxrss);
	if (st != DM_OK)
		fprintf(stderr, "dm_bench: send: %s: %s (server: %d %s %s)\n", dm_status_str(st),
		        err.msg, err.smtp_code, err.enhanced, err.server_text);
	free(res);
	message_free(msg);
	free(body);
	if (raw_fd >= 0)
		close(raw_fd);
	return (st == DM_OK && failed == 0 && sent == o.count) ? 0 : 1;
}
