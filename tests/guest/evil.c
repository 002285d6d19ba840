// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: mode=evil. For every virtio device present
 * (blk, net, rnd), one malformed request at a time on one queue (blk's
 * request queue, net's transmit queue, rnd's queue): the device must
 * notice and say DEVICE_NEEDS_RESET (or, for blk, complete the request
 * with an error status), and after a reset and a fresh initialisation a
 * good request must succeed again. One line per case, "ok evil <dev>
 * <case>" or "fail evil <dev> <case>: <what>", then one verdict,
 * TESTGUEST PASS or TESTGUEST FAIL: <first failure>, and power off.
 */
#include "user.h"
#include "virtio.h"

#define BAD_ADDR	0xffffffff0000ull	/* far above any RAM we are given */
#define WRAP_ADDR	0xfffffffffffff000ull
#define WAIT_MS		2000

/* Scratch page: valid buffers the malformed chains point at. */
#define SC_HDR		0	/* 16 bytes: a blk read of sector 0, or a net header */
#define SC_DATA		512	/* 512 bytes */
#define SC_STATUS	2048	/* 1 byte */
#define SC_TABLE	4096	/* indirect tables, 16-byte aligned */
#define SC_TABLE2	(4096 + 1024)
#define SC_SIZE		8192

struct evdev {
	const char *name;
	u16 id;
	u32 nq;			/* queues set up */
	u32 target;		/* the queue that gets the malformed requests */
	bool data_write;	/* the data buffer's direction */
	bool has_status;	/* blk: a status byte ends the chain */
	int (*good)(struct vdev *vd, char *w, u32 wl);
};

static const struct evdev evdevs[] = {
	{ "blk", VIRTIO_ID_BLOCK, 1, 0, true, true, blk_good_request },
	{ "net", VIRTIO_ID_NET, 2, 1, false, false, net_good_request },
	{ "rnd", VIRTIO_ID_RNG, 1, 0, true, false, rnd_good_request },
};

#define EV_WANT	(1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX)

static u8 *sc;
static char why[112], first_fail[128];
static u32 nfail;

/* ---- building chains by hand ---- */

struct ebuf {
	u64 addr;
	u32 len;
	u16 flags;		/* WRITE / INDIRECT; NEXT is added by put_chain */
};

static struct ebuf eb(u64 addr, u32 len, u16 flags)
{
	return (struct ebuf){ addr, len, flags };
}

/* Write @n descriptors into @t (a ring's table or an indirect one), linked from 0. */
static void put_chain(struct vring_desc *t, const struct ebuf *b, u32 n)
{
	u32 i;

	for (i = 0; i < n; i++) {
		t[i].addr = b[i].addr;
		t[i].len = b[i].len;
		t[i].flags = b[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		t[i].next = i + 1 < n ? i + 1 : 0;
	}
}

/* Header, a data buffer (at @data, @len), and the status byte if the device has one. */
static u32 req_shape(const struct evdev *e, struct ebuf *b, u64 data, u32 len)
{
	u32 n = 0;

	b[n++] = eb((u64)sc + SC_HDR, 16, 0);
	b[n++] = eb(data, len, e->data_write ? VRING_DESC_F_WRITE : 0);
	if (e->has_status)
		b[n++] = eb((u64)sc + SC_STATUS, 1, VRING_DESC_F_WRITE);
	return n;
}

/* Make head @head available (index moved by @step) and ring the doorbell, whatever the device asked. */
static void offer(struct vq *q, u16 head, u16 step)
{
	q->avail[2 + (q->avail_idx & (q->size - 1))] = head;
	q->avail_idx += step;
	vq_publish(q, q->avail_idx);
	vq_notify(q);
}

/* ---- the cases: each sets up one malformed request on @q; -1 = not applicable ---- */

static int c_index(const struct evdev *e, struct vq *q)
{
	(void)e;
	offer(q, q->size + 3, 1);
	return 0;
}

static int c_next(const struct evdev *e, struct vq *q)
{
	struct ebuf b[3];
	u32 n = req_shape(e, b, (u64)sc + SC_DATA, 512);

	put_chain(q->desc, b, n);
	q->desc[0].next = q->size;	/* first link leaves the table */
	offer(q, 0, 1);
	return 0;
}

static int c_loop(const struct evdev *e, struct vq *q)
{
	struct ebuf b[2] = { eb((u64)sc + SC_HDR, 16, 0), eb((u64)sc + SC_DATA, 16, 0) };

	(void)e;
	put_chain(q->desc, b, 2);
	q->desc[1].flags |= VRING_DESC_F_NEXT;
	q->desc[1].next = 0;
	offer(q, 0, 1);
	return 0;
}

/* Every descriptor of the queue in one chain, and the last leads back to the first. */
static int c_long(const struct evdev *e, struct vq *q)
{
	u32 i;

	(void)e;
	for (i = 0; i < q->size; i++) {
		q->desc[i].addr = (u64)sc + SC_HDR;
		q->desc[i].len = 16;
		q->desc[i].flags = VRING_DESC_F_NEXT;
		q->desc[i].next = (i + 1) % q->size;
	}
	offer(q, 0, 1);
	return 0;
}

static int c_oob(const struct evdev *e, struct vq *q)
{
	struct ebuf b[3];
	u32 n = req_shape(e, b, BAD_ADDR, 512);

	put_chain(q->desc, b, n);
	offer(q, 0, 1);
	return 0;
}

static int c_wrap(const struct evdev *e, struct vq *q)
{
	struct ebuf b[3];
	u32 n = req_shape(e, b, WRAP_ADDR, 0x2000);

	put_chain(q->desc, b, n);
	offer(q, 0, 1);
	return 0;
}

/* A device-writable buffer, then a readable one. */
static int c_order(const struct evdev *e, struct vq *q)
{
	struct ebuf b[3] = {
		eb((u64)sc + SC_DATA, 512, VRING_DESC_F_WRITE),
		eb((u64)sc + SC_HDR, 16, 0),
		eb((u64)sc + SC_STATUS, 1, VRING_DESC_F_WRITE),
	};

	put_chain(q->desc, b, e->has_status ? 3 : 2);
	offer(q, 0, 1);
	return 0;
}

static int c_nested(const struct evdev *e, struct vq *q)
{
	struct vring_desc *t = (void *)(sc + SC_TABLE), *t2 = (void *)(sc + SC_TABLE2);
	struct ebuf b[3];
	u32 n = req_shape(e, b, (u64)sc + SC_DATA, 512);

	if (!vdev_has(q->vd, VIRTIO_F_INDIRECT_DESC))
		return -1;
	put_chain(t2, b + 1, n - 1);
	b[1] = eb((u64)t2, (n - 1) * 16, VRING_DESC_F_INDIRECT);
	put_chain(t, b, 2);
	put_chain(q->desc, &(struct ebuf){ (u64)t, 32, VRING_DESC_F_INDIRECT }, 1);
	offer(q, 0, 1);
	return 0;
}

static int c_indlen(const struct evdev *e, struct vq *q)
{
	struct vring_desc *t = (void *)(sc + SC_TABLE);
	struct ebuf b[3];
	u32 n = req_shape(e, b, (u64)sc + SC_DATA, 512);

	if (!vdev_has(q->vd, VIRTIO_F_INDIRECT_DESC))
		return -1;
	put_chain(t, b, n);
	put_chain(q->desc, &(struct ebuf){ (u64)t, n * 16 - 8, VRING_DESC_F_INDIRECT }, 1);
	offer(q, 0, 1);
	return 0;
}

static int c_indoob(const struct evdev *e, struct vq *q)
{
	(void)e;
	if (!vdev_has(q->vd, VIRTIO_F_INDIRECT_DESC))
		return -1;
	put_chain(q->desc, &(struct ebuf){ BAD_ADDR, 48, VRING_DESC_F_INDIRECT }, 1);
	offer(q, 0, 1);
	return 0;
}

/* A good request, but the available index says size + 1 were added. */
static int c_availjump(const struct evdev *e, struct vq *q)
{
	struct ebuf b[3];
	u32 n = req_shape(e, b, (u64)sc + SC_DATA, 512);

	put_chain(q->desc, b, n);
	offer(q, 0, q->size + 1);
	return 0;
}

/* blk only: a request with no status byte to report on. */
static int c_nostatus(const struct evdev *e, struct vq *q)
{
	if (!e->has_status)
		return -1;
	put_chain(q->desc, &(struct ebuf){ (u64)sc + SC_HDR, 16, 0 }, 1);
	offer(q, 0, 1);
	return 0;
}

struct evcase {
	const char *name;
	int (*fn)(const struct evdev *e, struct vq *q);
};

static const struct evcase cases[] = {
	{ "index", c_index },
	{ "next", c_next },
	{ "loop", c_loop },
	{ "long", c_long },
	{ "oob", c_oob },
	{ "wrap", c_wrap },
	{ "order", c_order },
	{ "nested", c_nested },
	{ "indlen", c_indlen },
	{ "indoob", c_indoob },
	{ "availjump", c_availjump },
	{ "nostatus", c_nostatus },
};

/* ---- running them ---- */

static void result(const struct evdev *e, const char *cname, const char *fail, const char *note)
{
	if (!fail) {
		pr("ok evil %s %s%s\n", e->name, cname, note);
		return;
	}
	pr("fail evil %s %s: %s\n", e->name, cname, fail);
	if (!nfail++)
		fmt(first_fail, sizeof(first_fail), "evil %s %s: %s", e->name, cname, fail);
}

/* Fresh start and a good request; NULL or what went wrong (in why). */
static const char *reinit(const struct evdev *e, struct vdev *vd)
{
	u32 w;

	if (vdev_init(vd, EV_WANT, e->nq, 0, why, sizeof(why)))
		return why;
	w = fmt(why, sizeof(why), "after reset: ");
	if (e->good(vd, why + w, sizeof(why) - w))
		return why;
	return NULL;
}

/*
 * Wait for the device's verdict on the malformed request: NEEDS_RESET, or
 * a completion (acceptable for blk with an error status).
 */
static const char *verdict(const struct evdev *e, struct vdev *vd, struct vq *q,
			   const char **note)
{
	static char nb[48];
	struct rtime rt;
	bool done_bad = false;
	u8 st, s = 0;

	*note = "";
	rt_start(&rt);
	for (;;) {
		st = vdev_status(vd);
		if (st & VIRTIO_S_NEEDS_RESET)
			return NULL;
		/* last_used: where the good request before left the used ring. */
		if (!done_bad && q->live && vq_used_idx(q) != q->last_used) {
			s = sc[SC_STATUS];
			if (e->has_status && s != 0 && s != 0xff) {
				fmt(nb, sizeof(nb), " (completed with status %u)", s);
				*note = nb;
				return NULL;
			}
			/*
			 * Completed with no status: NEEDS_RESET must follow, but nothing
			 * orders it before the used ring update, so keep watching.
			 */
			done_bad = true;
		}
		if (rt_ms(&rt) > WAIT_MS) {
			if (done_bad)
				fmt(why, sizeof(why), "completed (status byte 0x%x, device status "
				    "0x%x) instead of NEEDS_RESET", s, st);
			else
				fmt(why, sizeof(why), "no NEEDS_RESET after %u ms (status 0x%x)",
				    WAIT_MS, st);
			return why;
		}
		watchdog_poll();
		udelay(20);
	}
}

/* The rings of the target queue outside RAM; everything else as usual. */
static const char *ringaddr_case(const struct evdev *e, struct vdev *vd)
{
	struct vq *q;
	const char *fail, *note;
	u32 i;

	if (vdev_begin(vd, EV_WANT, why, sizeof(why)))
		return why;
	for (i = 0; i < e->nq; i++)
		if (i != e->target && vq_setup(vd, i, 0, why, sizeof(why)))
			return why;
	q = &vd->vq[e->target];
	q->live = false;
	cc_write16(vd, CC_QSELECT, e->target);
	cc_write16(vd, CC_QMSIX, VIRTIO_NO_VECTOR);
	cc_write64(vd, CC_QDESC, BAD_ADDR);
	cc_write64(vd, CC_QAVAIL, BAD_ADDR + 0x1000);
	cc_write64(vd, CC_QUSED, BAD_ADDR + 0x2000);
	q->notify = vd->notify_base + (u64)cc_read16(vd, CC_QNOFF) * vd->notify_mult;
	cc_write16(vd, CC_QENABLE, 1);
	/* A device that only checks on use gets DRIVER_OK and a kick. */
	vdev_set_status(vd, vdev_status(vd) | VIRTIO_S_DRIVER_OK);
	vq_notify(q);
	fail = verdict(e, vd, q, &note);
	return fail;
}

static void run_device(const struct evdev *e)
{
	static struct vdev vd;
	const char *fail, *note;
	u32 i;
	int r;

	r = vdev_find(&vd, e->id, 0, e->name, why, sizeof(why));
	if (r == -1) {
		pr("evil: no virtio-%s device\n", e->name);
		return;
	}
	if (r) {
		result(e, "setup", why, "");
		return;
	}
	fail = reinit(e, &vd);
	result(e, "baseline", fail, "");
	if (fail)
		return;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vq *q = &vd.vq[e->target];

		sc[SC_STATUS] = 0xff;
		if (cases[i].fn(e, q)) {
			/* Not applicable: nothing was offered, the device is still good. */
			continue;
		}
		fail = verdict(e, &vd, q, &note);
		result(e, cases[i].name, fail, note);
		if ((fail = reinit(e, &vd))) {
			result(e, cases[i].name, fail, "");
			return;
		}
	}
	sc[SC_STATUS] = 0xff;
	fail = ringaddr_case(e, &vd);
	result(e, "ringaddr", fail, "");
	fail = reinit(e, &vd);
	if (fail)
		result(e, "ringaddr", fail, "");
	vdev_reset(&vd);
}

void evil_run(void)
{
	u32 i;

	cur_check = "evil";
	watchdog_deadline = rdtsc() + 300 * tsc_hz;
	sc = vio_alloc(SC_SIZE, 4096);
	if (!sc)
		fail_final("evil: out of memory");
	for (i = 0; i < sizeof(evdevs) / sizeof(evdevs[0]); i++)
		run_device(&evdevs[i]);
	if (nfail)
		fail_final("%s", first_fail);
	pr("TESTGUEST PASS\n");
	poweroff();
}
