// SPDX-License-Identifier: BSD-2-Clause
/* Internet checksum and Ethernet CRC-32 (see net_csum.h). */
#include "dev/net/net_csum.h"

#include <pthread.h>
#include <string.h>

/*
 * Sum 32-bit big-endian halves of 64-bit loads into a 64-bit accumulator: ones' complement
 * addition is associative, so any grouping folds to the same 16-bit result, and 2^32 words
 * of 2^32-1 each cannot overflow 64 bits for any frame.
 */
uint64_t csum_add(uint64_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w = __builtin_bswap64(w);
		sum += (w >> 32) + (w & 0xFFFFFFFFU);
		p += 8;
		len -= 8;
	}
	while (len >= 2) {
		sum += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

uint16_t csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)sum;
}

/* Slicing by 8: eight tables of 256 entries, built once. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^
					crc_tab[0][crc_tab[t - 1][i] & 0xFF];
}

uint32_t eth_crc32(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = 0xFFFFFFFFU;

	pthread_once(&crc_once, crc_init);
	while (len >= 8) {
		uint32_t lo, hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= c; /* x86 and every host khyve runs on is little endian */
		c = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^
		    crc_tab[5][(lo >> 16) & 0xFF] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xFF] ^
		    crc_tab[2][(hi >> 8) & 0xFF] ^ crc_tab[1][(hi >> 16) & 0xFF] ^
		    crc_tab[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc_tab[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
	return ~c;
}
