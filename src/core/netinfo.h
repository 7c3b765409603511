/*
 * netinfo.h - what IPCONFIG shows about the network: host name, interface
 * addresses with prefix length, default gateways, DNS servers, and whether
 * the kernel clock is synchronised (NTP).
 *
 * Sources: gethostname(2), getifaddrs(3), /proc/net/route and
 * /proc/net/ipv6_route for the default routes, /etc/resolv.conf (path
 * overridable for tests) for name servers, adjtimex(2) for the clock state.
 */
#ifndef DEVMAIL_CORE_NETINFO_H
#define DEVMAIL_CORE_NETINFO_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

#define NETINFO_MAX_ADDRS 64
#define NETINFO_MAX_DNS 8
#define NETINFO_MAX_GW 8

struct netinfo_addr {
	char ifname[32];
	char addr[64];      /* numeric address, IPv6 without scope */
	unsigned prefix;    /* prefix length */
	bool ipv6;
	bool up;
};

struct netinfo {
	char hostname[256];
	struct netinfo_addr addrs[NETINFO_MAX_ADDRS];
	size_t n_addrs;
	char gateways[NETINFO_MAX_GW][80];   /* "192.168.1.1 (eth0)" */
	size_t n_gateways;
	char dns[NETINFO_MAX_DNS][64];
	size_t n_dns;
	int clock_synced;   /* 1 synchronised, 0 not, -1 unknown */
};

/* Fills *ni.  `resolv_conf` NULL means /etc/resolv.conf.  Missing sources
 * leave their part empty; only a failing getifaddrs() is an error (DM_EIO). */
enum dm_status netinfo_read(struct netinfo *ni, const char *resolv_conf,
                            struct dm_err *err);

/* The clock state alone (what netinfo_read() puts in clock_synced): 1
 * synchronised, 0 not, -1 unknown.  One adjtimex(2) call that only reads;
 * the daemon's clock watch calls it when it looks again. */
int netinfo_clock_state(void);

/* Converts a netmask sockaddr byte array into a prefix length. */
unsigned netinfo_prefix_len(const unsigned char *mask, size_t len);

/* Parses name servers out of resolv.conf text (tests use this directly). */
size_t netinfo_parse_resolv(const char *text, char out[][64], size_t max);

#endif
