// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: virtio-rng, mode=rnd. Reads 4 KiB of entropy
 * RND_READS times (a device may return less than asked per request, so a
 * read is as many requests as it takes), checks each is neither all zero
 * nor one repeated byte, has the spread of byte values random data has,
 * and differs from the previous read; one "seq N" per read, then
 * TESTGUEST PASS and power off.
 */
#include "user.h"
#include "virtio.h"

#define RND_READS	8
#define RND_BYTES	4096

static struct vdev rng;
static char why[96];

/* Fill @buf with @n bytes from the device. 0, or -1 with @w. */
static int rnd_read(struct vdev *vd, u8 *buf, u32 n, char *w, u32 wl)
{
	u32 got = 0, len, empty = 0;
	u64 cookie;
	int r;

	while (got < n) {
		struct vbuf b = { buf + got, n - got, true };

		if (vq_add(&vd->vq[0], &b, 1, got, NULL)) {
			fmt(w, wl, "queue full");
			return -1;
		}
		vq_kick(&vd->vq[0]);
		r = vq_wait(&vd->vq[0], &cookie, &len, 2000, w, wl);
		if (r < 0)
			return -1;
		if (!r) {
			fmt(w, wl, "request of %u bytes not completed in 2 s (status 0x%x)",
			    n - got, vdev_status(vd));
			return -1;
		}
		if (len > n - got) {
			fmt(w, wl, "device wrote %u bytes into a %u-byte buffer", len, n - got);
			return -1;
		}
		if (!len && ++empty > 100) {
			fmt(w, wl, "100 empty completions in a row");
			return -1;
		}
		got += len;
	}
	return 0;
}

static const char *rnd_check(const u8 *cur, const u8 *prev)
{
	static u16 seen[256];
	u32 i, distinct = 0;

	memset(seen, 0, sizeof(seen));
	for (i = 0; i < RND_BYTES; i++) {
		if (!seen[cur[i]]++)
			distinct++;
	}
	if (seen[0] == RND_BYTES)
		return "all zero";
	if (distinct == 1)
		return "one byte value repeated";
	/* 4096 random bytes miss a given value with probability e^-16. */
	if (distinct < 200)
		return "too few distinct byte values";
	if (prev && !memcmp(cur, prev, RND_BYTES))
		return "same as the previous read";
	return NULL;
}

void rnd_run(void)
{
	u8 *buf[2];
	const char *bad;
	u32 i;
	int r;

	cur_check = "rnd";
	watchdog_deadline = rdtsc() + 60 * tsc_hz;
	r = vdev_find(&rng, VIRTIO_ID_RNG, 0, "rnd", why, sizeof(why));
	if (r == -1)
		fail_final("rnd: no virtio-rng device");
	if (r || vdev_init(&rng, 1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX, 1,
			   VQ_MAX, why, sizeof(why)))
		fail_final("rnd: %s", why);
	pr("rnd: features 0x%lx, queue %u\n", rng.features, rng.vq[0].size);
	buf[0] = vio_alloc(RND_BYTES, 4096);
	buf[1] = vio_alloc(RND_BYTES, 4096);
	if (!buf[0] || !buf[1])
		fail_final("rnd: out of memory");
	for (i = 0; i < RND_READS; i++) {
		u8 *cur = buf[i & 1];

		memset(cur, 0, RND_BYTES);
		if (rnd_read(&rng, cur, RND_BYTES, why, sizeof(why)))
			fail_final("rnd: read %u: %s", i + 1, why);
		bad = rnd_check(cur, i ? buf[!(i & 1)] : NULL);
		if (bad)
			fail_final("rnd: read %u: %s", i + 1, bad);
		pr("seq %u\n", i + 1);
	}
	pr("TESTGUEST PASS\n");
	poweroff();
}

int rnd_good_request(struct vdev *vd, char *w, u32 wl)
{
	static u8 *buf;

	if (!buf)
		buf = vio_alloc(64, 64);
	return rnd_read(vd, buf, 64, w, wl);
}
