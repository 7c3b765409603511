/*
 * fuzz_util.h - helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput(); FUZZ_CHECK() aborts with a
 * message so that libFuzzer (and the replay driver under ctest) records a
 * property violation as a crash with the input that caused it.
 */
#ifndef DEVMAIL_FUZZ_UTIL_H
#define DEVMAIL_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: property failed: %s: ",      \
			        __FILE__, __LINE__, #cond);                  \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			abort();                                             \
		}                                                            \
	} while (0)

/* Splits data[size] into `max` malloc'd, NUL-terminated fields at 0x00
 * bytes; the last field takes the rest of the input, NULs included (its
 * length is in lens[max - 1]; lens may be NULL).  Missing fields are "".
 * Free with fuzz_fields_free(). */
static inline void fuzz_fields(const uint8_t *data, size_t size,
                               char **fields, size_t *lens, size_t max)
{
	const uint8_t *p = data, *end = data + size;
	for (size_t n = 0; n < max; n++) {
		const uint8_t *e = end;
		if (n < max - 1 && p < end) {
			e = memchr(p, 0, (size_t)(end - p));
			if (!e)
				e = end;
		}
		size_t len = (size_t)(e - p);
		char *f = malloc(len + 1);
		if (!f)
			abort();
		if (len)
			memcpy(f, p, len);
		f[len] = '\0';
		if (lens)
			lens[n] = len;
		fields[n] = f;
		p = e < end ? e + 1 : end;
	}
}

static inline void fuzz_fields_free(char **fields, size_t max)
{
	for (size_t i = 0; i < max; i++)
		free(fields[i]);
}

/* Checks that buf[len] uses CRLF line ends only (no bare CR, no bare LF)
 * and that no line is longer than `max` octets (CRLF excluded).  When
 * `need_final_crlf`, a non-empty buffer must end in CRLF.  Returns NULL or
 * a description of the first violation (static storage). */
static inline const char *fuzz_lines_check(const char *buf, size_t len,
                                           size_t max, bool need_final_crlf)
{
	static char why[128];
	size_t col = 0, line = 1;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\r') {
			if (i + 1 >= len || buf[i + 1] != '\n') {
				snprintf(why, sizeof(why), "bare CR at offset %zu (line %zu)", i, line);
				return why;
			}
			i++;
			col = 0;
			line++;
			continue;
		}
		if (buf[i] == '\n') {
			snprintf(why, sizeof(why), "bare LF at offset %zu (line %zu)", i, line);
			return why;
		}
		if (++col > max) {
			snprintf(why, sizeof(why), "line %zu longer than %zu octets", line, max);
			return why;
		}
	}
	if (need_final_crlf && len > 0 && (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n'))
		return "does not end with CRLF";
	return NULL;
}

#endif
