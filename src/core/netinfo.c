/* netinfo.c - host name, addresses, gateways, DNS and clock state. */
#include "core/netinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <unistd.h>

unsigned netinfo_prefix_len(const unsigned char *mask, size_t len)
{
	unsigned bits = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char b = mask[i];
		while (b & 0x80) {
			bits++;
			b = (unsigned char)(b << 1);
		}
		if (mask[i] != 0xff)
			break;
	}
	return bits;
}

static void netinfo_addrs(struct netinfo *ni, struct ifaddrs *list)
{
	for (struct ifaddrs *ifa = list; ifa && ni->n_addrs < NETINFO_MAX_ADDRS;
	     ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr)
			continue;
		int fam = ifa->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		struct netinfo_addr *a = &ni->addrs[ni->n_addrs];
		memset(a, 0, sizeof(*a));
		snprintf(a->ifname, sizeof(a->ifname), "%s", ifa->ifa_name);
		a->up = (ifa->ifa_flags & IFF_UP) != 0;
		a->ipv6 = fam == AF_INET6;
		if (fam == AF_INET) {
			const struct sockaddr_in *sin = (const void *)ifa->ifa_addr;
			inet_ntop(AF_INET, &sin->sin_addr, a->addr, sizeof(a->addr));
			if (ifa->ifa_netmask) {
				const struct sockaddr_in *m = (const void *)ifa->ifa_netmask;
				a->prefix = netinfo_prefix_len((const unsigned char *)&m->sin_addr, 4);
			}
		} else {
			const struct sockaddr_in6 *sin6 = (const void *)ifa->ifa_addr;
			inet_ntop(AF_INET6, &sin6->sin6_addr, a->addr, sizeof(a->addr));
			if (ifa->ifa_netmask) {
				const struct sockaddr_in6 *m = (const void *)ifa->ifa_netmask;
				a->prefix = netinfo_prefix_len(m->sin6_addr.s6_addr, 16);
			}
		}
		ni->n_addrs++;
	}
}

/* /proc/net/route: Iface Destination Gateway Flags ... in little-endian hex. */
static void netinfo_gw4(struct netinfo *ni)
{
	FILE *f = fopen("/proc/net/route", "r");
	char line[512];
	if (!f)
		return;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return;
	}
	while (fgets(line, sizeof(line), f) && ni->n_gateways < NETINFO_MAX_GW) {
		char ifname[32];
		unsigned long dest, gw;
		unsigned flags;
		if (sscanf(line, "%31s %lx %lx %x", ifname, &dest, &gw, &flags) != 4)
			continue;
		if (dest != 0 || gw == 0 || !(flags & 0x2 /* RTF_GATEWAY */))
			continue;
		struct in_addr in = { .s_addr = (in_addr_t)gw };
		char buf[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in, buf, sizeof(buf));
		snprintf(ni->gateways[ni->n_gateways++], sizeof(ni->gateways[0]),
		         "%s (%s)", buf, ifname);
	}
	fclose(f);
}

/* /proc/net/ipv6_route: dest destlen src srclen nexthop metric ref use flags iface */
static void netinfo_gw6(struct netinfo *ni)
{
	FILE *f = fopen("/proc/net/ipv6_route", "r");
	char line[512];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && ni->n_gateways < NETINFO_MAX_GW) {
		char dest[33], src[33], hop[33], ifname[32];
		unsigned dlen, slen;
		if (sscanf(line, "%32s %x %32s %x %32s %*x %*x %*x %*x %31s",
		           dest, &dlen, src, &slen, hop, ifname) != 6)
			continue;
		if (dlen != 0 || strspn(hop, "0") == 32)
			continue;
		unsigned char b[16];
		for (int i = 0; i < 16; i++) {
			unsigned v;
			if (sscanf(hop + 2 * i, "%2x", &v) != 1)
				v = 0;
			b[i] = (unsigned char)v;
		}
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, b, buf, sizeof(buf));
		snprintf(ni->gateways[ni->n_gateways++], sizeof(ni->gateways[0]),
		         "%s (%s)", buf, ifname);
	}
	fclose(f);
}

size_t netinfo_parse_resolv(const char *text, char out[][64], size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (p && *p && n < max) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[256];
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		char word[32], addr[64];
		if (sscanf(line, " %31s %63s", word, addr) == 2 &&
		    strcmp(word, "nameserver") == 0)
			snprintf(out[n++], 64, "%s", addr);
		p = eol ? eol + 1 : NULL;
	}
	return n;
}

static void netinfo_dns(struct netinfo *ni, const char *path)
{
	FILE *f = fopen(path ? path : "/etc/resolv.conf", "r");
	char text[8192];
	size_t len;
	if (!f)
		return;
	len = fread(text, 1, sizeof(text) - 1, f);
	text[len] = '\0';
	fclose(f);
	ni->n_dns = netinfo_parse_resolv(text, ni->dns, NETINFO_MAX_DNS);
}

enum dm_status netinfo_read(struct netinfo *ni, const char *resolv_conf,
                            struct dm_err *err)
{
	struct ifaddrs *list = NULL;

	memset(ni, 0, sizeof(*ni));
	if (gethostname(ni->hostname, sizeof(ni->hostname) - 1) != 0)
		snprintf(ni->hostname, sizeof(ni->hostname), "localhost");
	if (getifaddrs(&list) != 0)
		return dm_err_set(err, DM_EIO, "cannot list interfaces: %s",
		                  strerror(errno));
	netinfo_addrs(ni, list);
	freeifaddrs(list);
	netinfo_gw4(ni);
	netinfo_gw6(ni);
	netinfo_dns(ni, resolv_conf);

	ni->clock_synced = netinfo_clock_state();
	return DM_OK;
}

int netinfo_clock_state(void)
{
	/* adjtimex(2) with modes 0 only reads; TIME_ERROR / STA_UNSYNC mean the
	 * kernel clock is not disciplined by NTP. */
	struct timex tx = { .modes = 0 };
	int state = adjtimex(&tx);
	if (state < 0)
		return -1;
	return (state != TIME_ERROR && !(tx.status & STA_UNSYNC)) ? 1 : 0;
}
