/*
 * testroot.h - temporary data roots and small file fixtures for tests.
 *
 * testroot_make() makes a fresh directory $TMPDIR/devmail-<tag>-XXXXXX (or
 * under /tmp); testroot_remove() removes such a tree again (rm -rf, without
 * following symbolic links) and refuses any path without "/devmail-" in it,
 * so a test cannot wipe a directory it did not make.  peer_group_setup()
 * and peer_group_teardown() (peers.h) use them for the interop tests.
 *
 * None of these fail a test by themselves: each returns what happened and
 * the caller asserts (or, in a cmocka setup, returns -1).
 */
#ifndef DEVMAIL_TESTS_TESTROOT_H
#define DEVMAIL_TESTS_TESTROOT_H

#include <stddef.h>

struct registry;

/* Makes the directory into out[cap].  Returns out, or NULL with errno set
 * (ENAMETOOLONG when cap is too small, or mkdtemp's error). */
char *testroot_make(const char *tag, char *out, size_t cap);

/* Removes the tree at path, depth first.  Returns 0 when everything went,
 * -1 when something could not be removed or the path was refused (EINVAL:
 * NULL or no "/devmail-" in it).  A path that does not exist is 0. */
int testroot_remove(const char *path);

/* Reads a whole file into a malloc'd, NUL-terminated buffer (*len, when
 * not NULL, receives the byte count without the NUL).  Returns NULL with
 * errno set when the file cannot be opened or read (ENOENT: missing). */
char *testroot_slurp(const char *path, size_t *len);

/* Creates or truncates path and writes text into it.  Returns 0, or -1
 * with errno set when opening, writing or closing failed. */
int testroot_write(const char *path, const char *text);

/* A cmocka fixture: a fresh root devmail-<tag>-* with its registry open. */
struct testroot_reg {
	char root[256];
	struct registry *reg;
};

/* Makes *state a struct testroot_reg (calloc'd).  Returns 0, or -1 (with a
 * line on stderr) when the root or the registry could not be made. */
int testroot_reg_setup(void **state, const char *tag);

/* Closes the registry, removes the root, frees the fixture.  Returns -1
 * (cmocka then fails the test) when the root could not be removed. */
int testroot_reg_teardown(void **state);

#endif
