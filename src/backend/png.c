// SPDX-License-Identifier: BSD-2-Clause
/* PNG writer (see png.h), after the PNG specification: signature, IHDR, one IDAT, IEND. */
#include "backend/png.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A chunk at @p: length, type, data (already in place after the type), CRC. */
static size_t chunk(uint8_t *p, const char *type, size_t len)
{
	be32(p, (uint32_t)len);
	memcpy(p + 4, type, 4);
	be32(p + 8 + len, (uint32_t)crc32(0, p + 4, (uInt)(len + 4)));
	return len + 12;
}

int png_encode(const uint32_t *px, unsigned w, unsigned h, uint8_t **out, size_t *len)
{
	size_t rowlen = 1 + (size_t)w * 3, rawlen = rowlen * h;
	uLongf zlen = compressBound((uLong)rawlen);
	uint8_t *raw = malloc(rawlen), *buf = malloc(8 + 25 + 12 + zlen + 12), *p;

	if (!raw || !buf) {
		free(raw);
		free(buf);
		return -ENOMEM;
	}
	for (unsigned y = 0; y < h; y++) {
		uint8_t *r = raw + y * rowlen;

		r[0] = 0; /* filter: none */
		for (unsigned x = 0; x < w; x++) {
			uint32_t c = px[(size_t)y * w + x];

			r[1 + 3 * x] = (uint8_t)(c >> 16);
			r[2 + 3 * x] = (uint8_t)(c >> 8);
			r[3 + 3 * x] = (uint8_t)c;
		}
	}
	memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
	p = buf + 8;
	be32(p + 8, w);
	be32(p + 12, h);
	memcpy(p + 16, "\x08\x02\x00\x00\x00",
	       5); /* 8 bits, RGB, deflate, no filter, no interlace */
	p += chunk(p, "IHDR", 13);
	if (compress2(p + 8, &zlen, raw, (uLong)rawlen, 6) != Z_OK) {
		free(raw);
		free(buf);
		return -ENOMEM;
	}
	p += chunk(p, "IDAT", zlen);
	p += chunk(p, "IEND", 0);
	free(raw);
	*out = buf;
	*len = (size_t)(p - buf);
	return 0;
}

int png_write(const char *path, const uint32_t *px, unsigned w, unsigned h, char *err,
	      size_t errlen)
{
	char tmp[4200];
	uint8_t *buf;
	size_t len, off = 0;
	int fd, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	ret = png_encode(px, w, h, &buf, &len);
	if (ret) {
		snprintf(err, errlen, "out of memory encoding the picture");
		return ret;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		free(buf);
		return ret;
	}
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		unlink(tmp);
	}
	free(buf);
	return ret;
}
