/*
 * mimetype.c - extension -> media type table for attachments (IANA media
 * type registry names; the common files a controller mails: logs, data
 * exports, configuration, images, archives).
 */
#include "mail/mimetype.h"

#include <string.h>
#include <strings.h>

struct mimetype_entry {
	const char *ext;
	const char *type;
};

/* Sorted only for the reader; looked up linearly (small table). */
static const struct mimetype_entry mimetype_table[] = {
	{ "7z",   "application/x-7z-compressed" },
	{ "bin",  "application/octet-stream" },
	{ "bmp",  "image/bmp" },
	{ "bz2",  "application/x-bzip2" },
	{ "cfg",  "text/plain" },
	{ "conf", "text/plain" },
	{ "css",  "text/css" },
	{ "csv",  "text/csv" },
	{ "doc",  "application/msword" },
	{ "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
	{ "eml",  "message/rfc822" },
	{ "gif",  "image/gif" },
	{ "gz",   "application/gzip" },
	{ "htm",  "text/html" },
	{ "html", "text/html" },
	{ "ico",  "image/vnd.microsoft.icon" },
	{ "ics",  "text/calendar" },
	{ "ini",  "text/plain" },
	{ "jar",  "application/java-archive" },
	{ "jpeg", "image/jpeg" },
	{ "jpg",  "image/jpeg" },
	{ "js",   "text/javascript" },
	{ "json", "application/json" },
	{ "log",  "text/plain" },
	{ "md",   "text/markdown" },
	{ "mp3",  "audio/mpeg" },
	{ "mp4",  "video/mp4" },
	{ "ods",  "application/vnd.oasis.opendocument.spreadsheet" },
	{ "odt",  "application/vnd.oasis.opendocument.text" },
	{ "pdf",  "application/pdf" },
	{ "pem",  "application/x-pem-file" },
	{ "png",  "image/png" },
	{ "ppt",  "application/vnd.ms-powerpoint" },
	{ "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation" },
	{ "svg",  "image/svg+xml" },
	{ "tar",  "application/x-tar" },
	{ "tgz",  "application/gzip" },
	{ "tif",  "image/tiff" },
	{ "tiff", "image/tiff" },
	{ "txt",  "text/plain" },
	{ "wav",  "audio/wav" },
	{ "webp", "image/webp" },
	{ "xls",  "application/vnd.ms-excel" },
	{ "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
	{ "xml",  "application/xml" },
	{ "xz",   "application/x-xz" },
	{ "yaml", "application/yaml" },
	{ "yml",  "application/yaml" },
	{ "zip",  "application/zip" },
};

const char *mimetype_from_name(const char *filename)
{
	const char *base, *dot;

	if (!filename)
		return "application/octet-stream";
	base = strrchr(filename, '/');
	base = base ? base + 1 : filename;
	dot = strrchr(base, '.');
	/* ".profile" is a hidden file without extension */
	if (!dot || dot == base || dot[1] == '\0')
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(mimetype_table) / sizeof(mimetype_table[0]); i++)
		if (strcasecmp(dot + 1, mimetype_table[i].ext) == 0)
			return mimetype_table[i].type;
	return "application/octet-stream";
}
