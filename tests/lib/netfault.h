/*
 * netfault.h - loopback situations in which a network call blocks, and a
 * cancel fired from another thread, for the cancel and timeout tests.
 *
 * backlog_full_open() makes a connect hang without leaving the machine: a
 * listener on 127.0.0.1 or ::1 with listen(fd, 0) that never accepts, and
 * as many client connects as it takes until one is stuck in SYN-SENT (Linux
 * drops a SYN while the accept queue is full, and the client retries after
 * a second).  Any further connect to that port blocks likewise.
 *
 * silent_peer_open() is a listener with room in its queue that never
 * accepts: a connect completes, but nothing is ever read from or written
 * to the connection, so the client's reads wait, its handshakes wait, and
 * its writes block once the socket buffers are full.
 *
 * fire_later_start() fires a cancel from a thread after a delay and notes
 * when (transport_now_ms()), so a test can measure how long after the fire
 * the blocked call returned.  Every helper is bounded in time and count;
 * everything is stopped by its owner (close, join).
 */
#ifndef DEVMAIL_TESTS_NETFAULT_H
#define DEVMAIL_TESTS_NETFAULT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct cancel;

#define BACKLOG_FULL_MAX 16   /* client sockets tried at most */

struct backlog_full {
	int lfd;                     /* the listener (never accepts) */
	int fds[BACKLOG_FULL_MAX];   /* the client sockets that filled it */
	size_t n;
	unsigned port;
	const char *host;            /* "127.0.0.1" or "::1" */
};

/* family AF_INET or AF_INET6.  Returns 0, or -1 with why[] filled. */
int backlog_full_open(int family, struct backlog_full *b, char *why,
                      size_t cap);
void backlog_full_close(struct backlog_full *b);

struct silent_peer {
	int lfd;
	unsigned port;
	const char *host;
};

/* Returns 0, or -1 with why[] filled. */
int silent_peer_open(int family, struct silent_peer *p, char *why,
                     size_t cap);
void silent_peer_close(struct silent_peer *p);

struct fire_later {
	struct cancel *cancel;
	int delay_ms;
	long fired_at;              /* transport_now_ms() just before the fire */
	pthread_t thread;
	bool started;
};

/* Starts a thread that sleeps delay_ms, then fires c.  0 or -1. */
int fire_later_start(struct fire_later *f, struct cancel *c, int delay_ms);
/* Joins the thread (idempotent).  Returns fired_at. */
long fire_later_join(struct fire_later *f);

#endif
