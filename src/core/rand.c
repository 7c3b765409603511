/* rand.c - getrandom(2) until the buffer is full. */
#include "core/rand.h"

#include <errno.h>
#include <sys/random.h>
#include <sys/types.h>

int rand_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			return EIO;
		got += (size_t)r;
	}
	return 0;
}
