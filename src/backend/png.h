/* SPDX-License-Identifier: BSD-2-Clause */
/* PNG files of console pictures (screenshots): 8-bit RGB, zlib-compressed, no filtering. */
#ifndef KHYVE_BACKEND_PNG_H
#define KHYVE_BACKEND_PNG_H

#include <stddef.h>
#include <stdint.h>

/*
 * Write @w x @h pixels (0x00RRGGBB) to @path: a temporary file beside it renamed over it, so a
 * reader never sees half a picture and a failure leaves what was there.  0 or -errno with a
 * message in @err.
 */
int png_write(const char *path, const uint32_t *px, unsigned w, unsigned h, char *err,
	      size_t errlen);

/* The PNG encoding into a malloc'ed buffer (*@out, *@len bytes).  0 or -ENOMEM. */
int png_encode(const uint32_t *px, unsigned w, unsigned h, uint8_t **out, size_t *len);

#endif
