// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: virtio 1.x over PCI, the driver's side.
 *
 * The device's layout is learnt from its vendor capabilities as a real
 * driver does (khyve puts everything in BAR 4, QEMU elsewhere); the BARs
 * are used as assigned. Queues are split rings in guest RAM. A request is
 * published in the available ring at once (release store of the index),
 * the doorbell is rung only when the device asked for it (EVENT_IDX's
 * avail_event, else the used ring's NO_NOTIFY flag), and completions are
 * polled from the used ring (acquire load of the index). One CPU drives a
 * queue, so compiler barriers plus x86's ordering would do; the __atomic
 * builtins say which orderings matter.
 */
#include "user.h"
#include "virtio.h"

#define CAP_COMMON	1
#define CAP_NOTIFY	2
#define CAP_ISR		3
#define CAP_DEVICE	4

#define VQ_DESC_OFF	0
#define VQ_AVAIL_OFF	4096
#define VQ_USED_OFF	8192
#define VQ_RING_BYTES	12288

struct vio_options vopt = {
	.blkflush = 16,
	.blkop = BLKOP_RANDREAD,
	.blksize = 4096,
	.blkdepth = 0,		/* 0: the mode's default */
	.seconds = 5,
	.netport = 7777,
	.netsize = 1472,
	.netwin = 64,
	.rering = 200,
};

/* ---- register access ---- */

static inline u8 rd8(u64 a) { return *(volatile u8 *)a; }
static inline u16 rd16(u64 a) { return *(volatile u16 *)a; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline void wr8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }

u8 cc_read8(struct vdev *vd, u32 off) { return rd8(vd->common + off); }
u16 cc_read16(struct vdev *vd, u32 off) { return rd16(vd->common + off); }
u32 cc_read32(struct vdev *vd, u32 off) { return rd32(vd->common + off); }
void cc_write8(struct vdev *vd, u32 off, u8 v) { wr8(vd->common + off, v); }
void cc_write16(struct vdev *vd, u32 off, u16 v) { wr16(vd->common + off, v); }
void cc_write32(struct vdev *vd, u32 off, u32 v) { wr32(vd->common + off, v); }

/* 64-bit ring addresses as two 32-bit halves, which every device takes. */
void cc_write64(struct vdev *vd, u32 off, u64 v)
{
	cc_write32(vd, off, (u32)v);
	cc_write32(vd, off + 4, (u32)(v >> 32));
}

u8 vcfg_read8(struct vdev *vd, u32 off) { return rd8(vd->devcfg + off); }
u16 vcfg_read16(struct vdev *vd, u32 off) { return rd16(vd->devcfg + off); }
u32 vcfg_read32(struct vdev *vd, u32 off) { return rd32(vd->devcfg + off); }

/* Two 32-bit reads are one value only if config_generation did not move. */
u64 vcfg_read64(struct vdev *vd, u32 off)
{
	u32 lo, hi;
	u8 gen;
	int tries = 100;

	do {
		gen = cc_read8(vd, CC_CFGGEN);
		lo = vcfg_read32(vd, off);
		hi = vcfg_read32(vd, off + 4);
	} while (gen != cc_read8(vd, CC_CFGGEN) && --tries);
	return (u64)hi << 32 | lo;
}

u8 vdev_status(struct vdev *vd)
{
	return cc_read8(vd, CC_STATUS);
}

void vdev_set_status(struct vdev *vd, u8 st)
{
	cc_write8(vd, CC_STATUS, st);
}

bool vdev_has(const struct vdev *vd, u32 bit)
{
	return vd->features >> bit & 1;
}

/* ---- discovery ---- */

/* Modern (0x1040 + id) or transitional (0x1000..0x103f, subsystem id = id). */
static bool is_virtio(const struct pci_fn *f, u16 id)
{
	if (f->vendor != VIRTIO_VENDOR)
		return false;
	if (f->device == 0x1040 + id)
		return true;
	return f->device >= 0x1000 && f->device < 0x1040 && pci_read16(f, 0x2e) == id;
}

struct vcap {
	u8 bar;
	u32 off, len;
	bool found;
};

static int cap_map(const struct pci_fn *f, const struct vcap *c, u64 *addr, char *why,
		   u32 whylen, const char *what)
{
	bool is64;
	u64 base = pci_bar_addr(f, c->bar, &is64);

	if (!base) {
		fmt(why, whylen, "%s capability names BAR %u, which is unassigned or I/O",
		    what, c->bar);
		return -2;
	}
	*addr = base + c->off;
	if (map_mmio(*addr, c->len ? c->len : 1)) {
		fmt(why, whylen, "cannot map BAR %u at 0x%lx", c->bar, base);
		return -2;
	}
	return 0;
}

static int vdev_caps(struct vdev *vd, char *why, u32 whylen)
{
	const struct pci_fn *f = vd->pci;
	struct vcap caps[5] = { { 0 } };
	u8 c = pci_cap_first(f);
	int guard, ret;

	for (guard = 0; c && guard < 48; guard++, c = pci_cap_next(f, c)) {
		u8 type;

		if (pci_read8(f, c) != PCI_CAP_VENDOR || pci_read8(f, c + 2) < 16)
			continue;
		type = pci_read8(f, c + 3);
		/* The first capability of a type is the preferred one. */
		if (type < CAP_COMMON || type > CAP_DEVICE || caps[type].found)
			continue;
		caps[type].found = true;
		caps[type].bar = pci_read8(f, c + 4);
		caps[type].off = pci_read32(f, c + 8);
		caps[type].len = pci_read32(f, c + 12);
		if (type == CAP_NOTIFY)
			vd->notify_mult = pci_read32(f, c + 16);
	}
	if (!caps[CAP_COMMON].found || !caps[CAP_NOTIFY].found) {
		fmt(why, whylen, "no %s capability (a legacy-only device?)",
		    caps[CAP_COMMON].found ? "notify" : "common configuration");
		return -2;
	}
	if ((ret = cap_map(f, &caps[CAP_COMMON], &vd->common, why, whylen, "common")) ||
	    (ret = cap_map(f, &caps[CAP_NOTIFY], &vd->notify_base, why, whylen, "notify")))
		return ret;
	if (caps[CAP_ISR].found &&
	    (ret = cap_map(f, &caps[CAP_ISR], &vd->isr, why, whylen, "ISR")))
		return ret;
	if (caps[CAP_DEVICE].found) {
		ret = cap_map(f, &caps[CAP_DEVICE], &vd->devcfg, why, whylen, "device");
		if (ret)
			return ret;
		vd->devcfg_len = caps[CAP_DEVICE].len;
	}
	/* The notify window must cover at least one doorbell. */
	if (caps[CAP_NOTIFY].len < 2) {
		fmt(why, whylen, "notify window of %u bytes", caps[CAP_NOTIFY].len);
		return -2;
	}
	return 0;
}

int vdev_find(struct vdev *vd, u16 id, u32 nth, const char *name, char *why, u32 whylen)
{
	const struct pci_fn *list;
	u32 n = pci_scan(&list), i;
	u16 cmd;

	memset(vd, 0, sizeof(*vd));
	for (i = 0; i < n; i++)
		if (is_virtio(&list[i], id) && !nth--)
			break;
	if (i == n)
		return -1;
	vd->pci = &list[i];
	vd->id = id;
	vd->name = name;
	/* Memory decoding and DMA on; INTx off: we poll and want no line held high. */
	cmd = pci_read16(vd->pci, PCI_COMMAND);
	pci_write16(vd->pci, PCI_COMMAND, cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
	if (vdev_caps(vd, why, whylen))
		return -2;
	pr("virtio: %s at %u:%u.%u (%04x:%04x), common 0x%lx, notify 0x%lx x %u, device 0x%lx\n",
	   name, vd->pci->bus, vd->pci->dev, vd->pci->fn, vd->pci->vendor, vd->pci->device,
	   vd->common, vd->notify_base, vd->notify_mult, vd->devcfg);
	return 0;
}

/* ---- initialisation ---- */

int vdev_reset(struct vdev *vd)
{
	struct rtime rt;
	u32 i;

	vdev_set_status(vd, 0);
	for (i = 0; i < vd->nq; i++)
		vd->vq[i].live = false;
	rt_start(&rt);
	while (vdev_status(vd)) {
		if (rt_ms(&rt) > 2000)
			return -1;
		cpu_relax();
	}
	return 0;
}

int vdev_begin(struct vdev *vd, u64 want, char *why, u32 whylen)
{
	u8 st;

	if (vdev_reset(vd)) {
		fmt(why, whylen, "status stays 0x%x after a reset", vdev_status(vd));
		return -1;
	}
	vdev_set_status(vd, VIRTIO_S_ACK);
	vdev_set_status(vd, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
	cc_write32(vd, CC_DFSELECT, 0);
	vd->offered = cc_read32(vd, CC_DF);
	cc_write32(vd, CC_DFSELECT, 1);
	vd->offered |= (u64)cc_read32(vd, CC_DF) << 32;
	if (!(vd->offered >> VIRTIO_F_VERSION_1 & 1)) {
		fmt(why, whylen, "VERSION_1 not offered (features 0x%lx)", vd->offered);
		vdev_set_status(vd, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FAILED);
		return -1;
	}
	vd->features = (want & vd->offered) | 1ull << VIRTIO_F_VERSION_1;
	cc_write32(vd, CC_GFSELECT, 0);
	cc_write32(vd, CC_GF, (u32)vd->features);
	cc_write32(vd, CC_GFSELECT, 1);
	cc_write32(vd, CC_GF, (u32)(vd->features >> 32));
	vdev_set_status(vd, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	st = vdev_status(vd);
	if (!(st & VIRTIO_S_FEATURES_OK)) {
		fmt(why, whylen, "FEATURES_OK refused for 0x%lx (status 0x%x)", vd->features, st);
		vdev_set_status(vd, st | VIRTIO_S_FAILED);
		return -1;
	}
	cc_write16(vd, CC_MSIX, VIRTIO_NO_VECTOR);
	vd->nq = 0;
	return 0;
}

/* Descriptors 0..size-1 all free, rings empty. */
static void vq_clear(struct vq *q)
{
	u32 i;

	memset(q->mem, 0, VQ_RING_BYTES);
	for (i = 0; i < q->size; i++) {
		q->link[i] = i + 1;
		q->count[i] = 0;
	}
	q->free_head = 0;
	q->nfree = q->size;
	q->avail_idx = q->kicked_idx = q->last_used = 0;
	q->notifies = q->rerings = 0;
	q->idle_acc = 0;
	q->idle_last = rdtsc();
	/* We poll: without EVENT_IDX, say so; with it, used_event is kept in vq_poll. */
	if (!vdev_has(q->vd, VIRTIO_F_EVENT_IDX))
		q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
}

int vq_setup(struct vdev *vd, u32 idx, u16 limit, char *why, u32 whylen)
{
	struct vq *q;
	u16 max, size;

	if (idx >= VIO_MAXQ || idx >= cc_read16(vd, CC_NUMQ)) {
		fmt(why, whylen, "no queue %u", idx);
		return -1;
	}
	q = &vd->vq[idx];
	cc_write16(vd, CC_QSELECT, idx);
	max = cc_read16(vd, CC_QSIZE);
	if (!max) {
		fmt(why, whylen, "queue %u has size 0", idx);
		return -1;
	}
	if (limit > VQ_MAX || !limit)
		limit = VQ_MAX;
	size = max < limit ? max : limit;
	while (size & (size - 1))
		size &= size - 1;	/* split rings want a power of two */
	if (!q->mem && !(q->mem = vio_alloc(VQ_RING_BYTES, 4096))) {
		fmt(why, whylen, "out of memory for queue %u", idx);
		return -1;
	}
	q->vd = vd;
	q->index = idx;
	q->size = size;
	q->watch = true;
	q->desc = (struct vring_desc *)((u8 *)q->mem + VQ_DESC_OFF);
	q->avail = (volatile u16 *)((u8 *)q->mem + VQ_AVAIL_OFF);
	q->used = (volatile u8 *)q->mem + VQ_USED_OFF;
	vq_clear(q);
	cc_write16(vd, CC_QSIZE, size);
	cc_write16(vd, CC_QMSIX, VIRTIO_NO_VECTOR);
	cc_write64(vd, CC_QDESC, (u64)q->desc);
	cc_write64(vd, CC_QAVAIL, (u64)q->avail);
	cc_write64(vd, CC_QUSED, (u64)q->used);
	q->notify = vd->notify_base + (u64)cc_read16(vd, CC_QNOFF) * vd->notify_mult;
	if (map_mmio(q->notify, 4)) {
		fmt(why, whylen, "cannot map the doorbell at 0x%lx", q->notify);
		return -1;
	}
	cc_write16(vd, CC_QENABLE, 1);
	q->live = true;
	if (idx >= vd->nq)
		vd->nq = idx + 1;
	return 0;
}

int vdev_ready(struct vdev *vd)
{
	u8 st = vdev_status(vd);

	vdev_set_status(vd, st | VIRTIO_S_DRIVER_OK);
	st = vdev_status(vd);
	return (st & VIRTIO_S_DRIVER_OK) && !(st & (VIRTIO_S_FAILED | VIRTIO_S_NEEDS_RESET))
	       ? 0 : -1;
}

int vdev_init(struct vdev *vd, u64 want, u32 nq, u16 limit, char *why, u32 whylen)
{
	u32 i;

	if (vdev_begin(vd, want, why, whylen))
		return -1;
	for (i = 0; i < nq; i++)
		if (vq_setup(vd, i, limit, why, whylen))
			return -1;
	if (vdev_ready(vd)) {
		fmt(why, whylen, "DRIVER_OK refused (status 0x%x)", vdev_status(vd));
		return -1;
	}
	return 0;
}

/* ---- virtqueue ---- */

static volatile u16 *used_event_p(struct vq *q)
{
	return &q->avail[2 + q->size];
}

static volatile u16 *avail_event_p(struct vq *q)
{
	return (volatile u16 *)(q->used + 4 + 8 * q->size);
}

static u16 desc_get(struct vq *q)
{
	u16 d = q->free_head;

	q->free_head = q->link[d];
	q->nfree--;
	return d;
}

void vq_publish(struct vq *q, u16 idx)
{
	/* Release: the ring entry and descriptors are visible before the index. */
	__atomic_store_n(&q->avail[1], idx, __ATOMIC_RELEASE);
}

int vq_add(struct vq *q, const struct vbuf *b, u32 n, u64 cookie, struct vring_desc *ind)
{
	u32 need = ind ? 1 : n, i;
	u16 head, d;

	if (!n || need > q->nfree)
		return -1;
	if (q->nfree == q->size)
		q->idle_acc = 0;	/* the clock runs while something is in flight */
	if (ind) {
		for (i = 0; i < n; i++) {
			ind[i].addr = (u64)b[i].addr;
			ind[i].len = b[i].len;
			ind[i].flags = (b[i].write ? VRING_DESC_F_WRITE : 0) |
				       (i + 1 < n ? VRING_DESC_F_NEXT : 0);
			ind[i].next = i + 1 < n ? i + 1 : 0;
		}
		head = desc_get(q);
		q->desc[head].addr = (u64)ind;
		q->desc[head].len = n * sizeof(*ind);
		q->desc[head].flags = VRING_DESC_F_INDIRECT;
		q->desc[head].next = 0;
	} else {
		/* desc_get follows the free list, so its links are the chain's too. */
		head = q->free_head;
		for (i = 0; i < n; i++) {
			d = desc_get(q);
			q->desc[d].addr = (u64)b[i].addr;
			q->desc[d].len = b[i].len;
			q->desc[d].flags = (b[i].write ? VRING_DESC_F_WRITE : 0) |
					   (i + 1 < n ? VRING_DESC_F_NEXT : 0);
			q->desc[d].next = i + 1 < n ? q->free_head : 0;
		}
	}
	q->count[head] = need;
	q->cookie[head] = cookie;
	q->avail[2 + (q->avail_idx & (q->size - 1))] = head;
	vq_publish(q, ++q->avail_idx);
	return 0;
}

void vq_notify(struct vq *q)
{
	wr16(q->notify, q->index);
	q->notifies++;
}

/* virtio 1.x 2.7.10: did the index pass @event between @old and @new? */
static bool need_event(u16 event, u16 new_idx, u16 old)
{
	return (u16)(new_idx - event - 1) < (u16)(new_idx - old);
}

void vq_kick(struct vq *q)
{
	u16 old = q->kicked_idx, new_idx = q->avail_idx;
	bool need;

	if (old == new_idx)
		return;
	/* Our index store must be visible before we read what the device asked for. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vdev_has(q->vd, VIRTIO_F_EVENT_IDX))
		need = need_event(__atomic_load_n(avail_event_p(q), __ATOMIC_RELAXED),
				  new_idx, old);
	else
		need = !(__atomic_load_n((volatile u16 *)q->used, __ATOMIC_RELAXED) &
			 VRING_USED_F_NO_NOTIFY);
	q->kicked_idx = new_idx;
	if (need)
		vq_notify(q);
}

/*
 * A request that never completes although we rang whenever the device
 * asked: either it is slow or the device lost track of the ring (e.g. it
 * moved avail_event past entries it never took, so no doorbell was due).
 * Ringing again is always allowed; say so, a few times.
 */
static void vq_stall_check(struct vq *q)
{
	u64 t = rdtsc(), d = t - q->idle_last;

	q->idle_last = t;
	if (q->nfree == q->size || !vopt.rering)
		return;
	if ((s64)d > 0 && d < tsc_hz / 10)
		q->idle_acc += d;
	if (q->idle_acc < vopt.rering * (tsc_hz / 1000))
		return;
	q->idle_acc = 0;
	if (++q->rerings <= 5 || !(q->rerings % 100)) {
		pr("virtio: %s queue %u: no completion for %u ms, doorbell rung again (%lu)\n",
		   q->vd->name, q->index, vopt.rering, q->rerings);
		pr("virtio: %s %s\n", q->vd->name, vq_describe(q));
	}
	vq_notify(q);
}

int vq_poll(struct vq *q, u64 *cookie, u32 *len, char *why, u32 whylen)
{
	volatile u32 *elem;
	u16 idx = vq_used_idx(q), d, n, i;
	u32 id;

	if (idx == q->last_used) {
		if (q->watch)
			vq_stall_check(q);
		return 0;
	}
	if ((u16)(idx - q->last_used) > q->size - q->nfree) {
		fmt(why, whylen, "used index %u is %u past %u with %u in flight", idx,
		    (u16)(idx - q->last_used), q->last_used, q->size - q->nfree);
		return -1;
	}
	elem = (volatile u32 *)(q->used + 4 + 8 * (q->last_used & (q->size - 1)));
	id = elem[0];
	*len = elem[1];
	if (id >= q->size || !q->count[id]) {
		fmt(why, whylen, "used id %u was not in flight (used entry %u)", id, q->last_used);
		return -1;
	}
	*cookie = q->cookie[id];
	/* The chain goes back to the free list, in our own link order. */
	n = q->count[id];
	q->count[id] = 0;
	for (d = id, i = 1; i < n; i++)
		d = q->link[d];
	q->link[d] = q->free_head;
	q->free_head = id;
	q->nfree += n;
	q->last_used++;
	q->idle_acc = 0;
	if (vdev_has(q->vd, VIRTIO_F_EVENT_IDX))
		__atomic_store_n(used_event_p(q), q->last_used, __ATOMIC_RELAXED);
	return 1;
}

const char *vq_describe(struct vq *q)
{
	static char buf[160];

	fmt(buf, sizeof(buf), "q%u descs %u avail %u kicked %u avail_event %u used %u/%u "
	    "doorbells %lu status 0x%x", q->index, q->size - q->nfree, q->avail_idx,
	    q->kicked_idx, *avail_event_p(q), vq_used_idx(q), q->last_used, q->notifies,
	    vdev_status(q->vd));
	return buf;
}

int vq_wait(struct vq *q, u64 *cookie, u32 *len, u64 ms, char *why, u32 whylen)
{
	struct rtime rt;
	int r;

	rt_start(&rt);
	for (;;) {
		r = vq_poll(q, cookie, len, why, whylen);
		if (r)
			return r;
		if (rt_ms(&rt) >= ms)
			return 0;
		watchdog_poll();
		cpu_relax();
	}
}

/* ---- memory ---- */

extern char _image_end[];
static u64 heap_next, heap_end;

static void heap_init(void)
{
	u32 i;

	heap_next = ((u64)_image_end + 0xfff) & ~0xfffull;
	heap_end = heap_next;
	for (i = 0; i < memmap_count; i++) {
		const struct memmap_entry *e = &memmap[i];

		if (e->type == 1 && heap_next >= e->addr && heap_next < e->addr + e->size)
			heap_end = e->addr + e->size;
	}
	if (heap_end > 4ull << 30)
		heap_end = 4ull << 30;
}

void *vio_alloc(u64 size, u64 align)
{
	u64 a;

	if (!heap_next)
		heap_init();
	if (!align)
		align = 16;
	a = (heap_next + align - 1) & ~(align - 1);
	if (a < heap_next || size > heap_end - a)
		return NULL;
	heap_next = a + size;
	memset((void *)a, 0, size);
	return (void *)a;
}

/* ---- time ---- */

void rt_start(struct rtime *r)
{
	r->last = rdtsc();
	r->acc = 0;
}

u64 rt_ms(struct rtime *r)
{
	u64 t = rdtsc(), d = t - r->last;

	r->last = t;
	if ((s64)d > 0 && d < tsc_hz / 10)
		r->acc += d;
	return r->acc / (tsc_hz / 1000);
}

u64 tsc_to_ns(u64 t)
{
	return t / tsc_hz * 1000000000ull + t % tsc_hz * 1000000000ull / tsc_hz;
}

u64 seq_deadline(u64 deadline, u64 now, u64 period)
{
	deadline += period;
	if ((s64)(now - deadline) > (s64)tsc_hz || (s64)(deadline - now) > (s64)(2 * period))
		deadline = now + period;
	return deadline;
}

/* ---- command line ---- */

static bool word_eq(const char *w, const char *s)
{
	size_t n = strlen(s);

	return !memcmp(w, s, n) && (w[n] == ' ' || !w[n]);
}

static bool word_val(const char *w, const char *key, const char **val)
{
	size_t n = strlen(key);

	if (memcmp(w, key, n))
		return false;
	*val = w + n;
	return true;
}

static u64 num(const char *s)
{
	u64 v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + *s++ - '0';
	if (*s == 'k' || *s == 'K')
		v <<= 10;
	else if (*s == 'm' || *s == 'M')
		v <<= 20;
	return v;
}

static const char *const blkops[] = { "seqread", "seqwrite", "randread", "randwrite" };

bool vio_cmdline_word(const char *w)
{
	const char *v;
	u32 i;

	if (word_eq(w, "mode=blk"))
		opt.mode = MODE_BLK;
	else if (word_eq(w, "mode=blkbench"))
		opt.mode = MODE_BLKBENCH;
	else if (word_eq(w, "mode=net"))
		opt.mode = MODE_NET;
	else if (word_eq(w, "mode=netbench"))
		opt.mode = MODE_NETBENCH;
	else if (word_eq(w, "nic=e1000"))
		vopt.nic = NIC_E1000;
	else if (word_eq(w, "nic=virtio"))
		vopt.nic = NIC_VIRTIO;
	else if (word_eq(w, "netdir=rx"))
		vopt.netrx = true;
	else if (word_eq(w, "netdir=tx"))
		vopt.netrx = false;
	else if (word_val(w, "netsize=", &v))
		vopt.netsize = num(v);
	else if (word_val(w, "netwin=", &v))
		vopt.netwin = num(v);
	else if (word_eq(w, "mode=rnd"))
		opt.mode = MODE_RND;
	else if (word_eq(w, "mode=evil"))
		opt.mode = MODE_EVIL;
	else if (word_val(w, "blkflush=", &v))
		vopt.blkflush = num(v);
	else if (word_val(w, "blksize=", &v))
		vopt.blksize = num(v);
	else if (word_val(w, "blkdepth=", &v))
		vopt.blkdepth = num(v);
	else if (word_val(w, "seconds=", &v))
		vopt.seconds = num(v);
	else if (word_val(w, "netport=", &v))
		vopt.netport = num(v);
	else if (word_val(w, "rering=", &v))
		vopt.rering = num(v);
	else if (word_val(w, "blkop=", &v)) {
		for (i = 0; i < 4; i++)
			if (word_eq(v, blkops[i]))
				vopt.blkop = i;
	} else
		return false;
	return true;
}

const char *vio_blkop_name(u32 op)
{
	return op < 4 ? blkops[op] : "?";
}

const char *vio_mode_name(void)
{
	switch (opt.mode) {
	case MODE_BLK: return "blk";
	case MODE_BLKBENCH: return "blkbench";
	case MODE_NET: return "net";
	case MODE_NETBENCH: return "netbench";
	case MODE_RND: return "rnd";
	case MODE_EVIL: return "evil";
	default: return "?";
	}
}

void vio_run(void)
{
	switch (opt.mode) {
	case MODE_BLK:
		blk_run();
	case MODE_BLKBENCH:
		blkbench_run();
	case MODE_NET:
		net_run();
	case MODE_NETBENCH:
		netbench_run();
	case MODE_RND:
		rnd_run();
	case MODE_EVIL:
		evil_run();
	default:
		fail_final("no such mode");
	}
}
