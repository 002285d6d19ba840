/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a NIC computes over frames: the Internet checksum (RFC 1071: the 16-bit ones'
 * complement sum of big-endian words) and the Ethernet frame check sequence (IEEE 802.3
 * CRC-32, reflected, polynomial 0x04C11DB7, as it appears on the wire after the data).
 */
#ifndef KHYVE_DEV_NET_NET_CSUM_H
#define KHYVE_DEV_NET_NET_CSUM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Add the bytes [p, p+len) to a running ones' complement sum, as big-endian 16-bit words
 * (an odd last byte is the high half of a word), so a range summed in pieces must be split
 * at even offsets.  The result is not folded.
 */
uint64_t csum_add(uint64_t sum, const void *p, size_t len);
/* Fold to 16 bits (not complemented). */
uint16_t csum_fold(uint64_t sum);
/* The checksum field value: the complement of the folded sum. */
static inline uint16_t csum_finish(uint64_t sum)
{
	return (uint16_t)~csum_fold(sum);
}

/* The 4 FCS bytes of @len bytes of frame, in wire order (little-endian CRC). */
uint32_t eth_crc32(const void *p, size_t len);

#endif
