/* boot.c - the boot line and the boot mail (see boot.h). */
#include "daemon/boot.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mail/submit.h"

static void boot_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void boot_cat(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;

	if (*len >= cap)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*len += (size_t)n;
	if (*len >= cap)
		*len = cap - 1;
}

void boot_info_read(struct registry *reg, time_t started, const char *version,
                    struct boot_info *bi)
{
	struct timespec up;

	memset(bi, 0, sizeof(*bi));
	snprintf(bi->version, sizeof(bi->version), "%s", version);
	bi->pid = getpid();
	bi->started = started;
	bi->uptime = clock_gettime(CLOCK_BOOTTIME, &up) == 0 ? (long)up.tv_sec : -1;
	(void)netinfo_read(&bi->ni, NULL, NULL);   /* parts missing stay empty */
	if (!reg || registry_get(reg, "IpConfig/HostName", bi->host,
	                         sizeof(bi->host), NULL, NULL) != DM_OK ||
	    !bi->host[0])
		snprintf(bi->host, sizeof(bi->host), "%s", bi->ni.hostname);
}

static bool boot_is_loopback(const struct netinfo_addr *a)
{
	return a->ipv6 ? strcmp(a->addr, "::1") == 0
	               : strncmp(a->addr, "127.", 4) == 0;
}

void boot_addresses(const struct boot_info *bi, const char *sep, char *out,
                    size_t cap)
{
	size_t len = 0;
	bool any = false;

	out[0] = '\0';
	for (int pass = 0; pass < 2 && !any; pass++) {
		for (size_t i = 0; i < bi->ni.n_addrs; i++) {
			const struct netinfo_addr *a = &bi->ni.addrs[i];
			if (!a->up || (pass == 0 && boot_is_loopback(a)))
				continue;
			boot_cat(out, cap, &len, "%s%s %s/%u", any ? sep : "",
			         a->ifname, a->addr, a->prefix);
			any = true;
		}
	}
	if (!any)
		snprintf(out, cap, "none");
}

static void boot_gateways(const struct boot_info *bi, const char *sep,
                          char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < bi->ni.n_gateways; i++)
		boot_cat(out, cap, &len, "%s%s", i ? sep : "", bi->ni.gateways[i]);
	if (bi->ni.n_gateways == 0)
		snprintf(out, cap, "none");
}

static void boot_dns(const struct boot_info *bi, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < bi->ni.n_dns; i++)
		boot_cat(out, cap, &len, "%s%s", i ? ", " : "", bi->ni.dns[i]);
	if (bi->ni.n_dns == 0)
		snprintf(out, cap, "none");
}

static const char *boot_clock_str(int state)
{
	return state > 0 ? "synchronised (NTP)" :
	       state == 0 ? "not synchronised" : "unknown";
}

void boot_log_line(const struct boot_info *bi, char *out, size_t cap)
{
	char addrs[1024], gws[1024], dns[600];

	boot_addresses(bi, ", ", addrs, sizeof(addrs));
	boot_gateways(bi, ", ", gws, sizeof(gws));
	boot_dns(bi, dns, sizeof(dns));
	snprintf(out, cap, "devmail %s started on %s (pid %ld); addresses %s; "
	         "gateway %s; DNS %s; clock %s", bi->version, bi->host,
	         (long)bi->pid, addrs, gws, dns, boot_clock_str(bi->ni.clock_synced));
}

void boot_mail_subject(const struct boot_info *bi, char *out, size_t cap)
{
	snprintf(out, cap, "%s booted", bi->host);
}

static void boot_time_str(time_t t, char *out, size_t cap)
{
	struct tm tm;

	if (!localtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%d %H:%M:%S %z",
	                                      &tm) == 0)
		snprintf(out, cap, "%lld", (long long)t);
}

static void boot_duration_str(long s, char *out, size_t cap)
{
	long d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;

	if (d > 0)
		snprintf(out, cap, "%ld day%s %02ld:%02ld:%02ld", d, d == 1 ? "" : "s",
		         h, m, sec);
	else
		snprintf(out, cap, "%02ld:%02ld:%02ld", h, m, sec);
}

size_t boot_mail_body(const struct boot_info *bi, char *out, size_t cap)
{
	static const char pad[] = "\n              ";  /* under the values */
	char started[64], since[64], up[64], addrs[2048], gws[1024], dns[600];
	size_t len = 0;

	boot_time_str(bi->started, started, sizeof(started));
	boot_addresses(bi, pad, addrs, sizeof(addrs));
	boot_gateways(bi, pad, gws, sizeof(gws));
	boot_dns(bi, dns, sizeof(dns));
	out[0] = '\0';
	boot_cat(out, cap, &len, "%s booted.\n\n", bi->host);
	boot_cat(out, cap, &len, "Host name:    %s\n", bi->host);
	boot_cat(out, cap, &len, "devmail:      %s (devmaild, pid %ld)\n",
	         bi->version, (long)bi->pid);
	boot_cat(out, cap, &len, "Boot time:    %s (devmaild started)\n", started);
	if (bi->uptime >= 0) {
		boot_duration_str(bi->uptime, up, sizeof(up));
		boot_time_str(bi->started - bi->uptime, since, sizeof(since));
		boot_cat(out, cap, &len, "Uptime:       %s (machine up since %s)\n",
		         up, since);
	} else {
		boot_cat(out, cap, &len, "Uptime:       unknown\n");
	}
	boot_cat(out, cap, &len, "Addresses:    %s\n", addrs);
	boot_cat(out, cap, &len, "Gateway:      %s\n", gws);
	boot_cat(out, cap, &len, "DNS servers:  %s\n", dns);
	boot_cat(out, cap, &len, "Clock:        %s\n",
	         boot_clock_str(bi->ni.clock_synced));
	if (bi->ni.clock_synced <= 0)
		boot_cat(out, cap, &len, "\nThe clock is not synchronised yet: the "
		         "times above may be wrong.\nThe system log says when it "
		         "becomes synchronised.\n");
	return len;
}

enum dm_status boot_mail_queue(const char *root, struct registry *reg,
                               const struct boot_info *bi,
                               char id[OUTBOX_ID_MAX], struct dm_err *err)
{
	char to[REG_VALUE_MAX], subject[320];
	char *body = NULL;
	struct message_spec spec;
	bool set = false;
	enum dm_status st;

	id[0] = '\0';
	if ((st = registry_get(reg, "Email/ToAddress", to, sizeof(to), &set, err)))
		return st;
	if (!set || !to[0])
		return dm_err_set(err, DM_ECONFIG, "Events/OnBoot/Email is on but "
		                  "Email/ToAddress is not set: no boot mail (IPCONFIG "
		                  "--to sets it)");
	if (!(body = malloc(BOOT_BODY_MAX)))
		return dm_err_set(err, DM_ENOMEM, "out of memory");
	boot_mail_subject(bi, subject, sizeof(subject));
	size_t n = boot_mail_body(bi, body, BOOT_BODY_MAX);
	memset(&spec, 0, sizeof(spec));
	spec.subject = subject;
	spec.body = body;
	spec.body_len = n;
	/* from, to, hostname: NULL -> Email/FromAddress, Email/ToAddress,
	 * IpConfig/HostName (submit.h) */
	st = submit_enqueue_message(root, reg, &spec, 0, id, err);
	free(body);
	return st;
}
