/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Dirty-page tracking of guest RAM (snap/dirty.c), for incremental snapshots and the pre-copy
 * rounds of live migration.
 *
 * It sees every writer of guest RAM: the vCPUs (through KVM) and khyve's own device threads
 * (virtio, AHCI, e1000, xHCI DMA write guest memory through khyve's mapping, which KVM's dirty
 * log never sees).  It costs the guest nothing between two fetches: the RAM is write-protected
 * with an asynchronous userfaultfd (UFFD_FEATURE_WP_ASYNC), so the first write to a page only
 * clears its protection in the kernel, with no fault for anyone to handle; a fetch reads and
 * re-protects the written pages in one PAGEMAP_SCAN ioctl.  Works on anonymous RAM and on the
 * private file mapping of a restored VM.
 *
 * Page numbering: page i is the 4 KiB at offset i * 4096 of the guest's memory area as a
 * snapshot lays it out (vm->mem[0], then vm->mem[1], back to back), the numbering of the
 * memory map; dirty_npages() pages in all.  Bitmaps are arrays of uint64_t, bit i of word i/64.
 *
 * Clients: any number at once, each with its own view.  Tracking starts with the first client
 * (write-protecting RAM takes a few ms per GiB touched) and stops when the last one is freed.
 * All functions may be called from any thread (one lock).  The VM's memory must stay mapped
 * where it was when the first client was made until dirty_vm_free (vm_destroy calls it).
 */
#ifndef KHYVE_SNAP_DIRTY_H
#define KHYVE_SNAP_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct dirty_client;

/*
 * A new client; tracking starts if it was not running.  Its first fetch returns the pages
 * written since this call.  -EOPNOTSUPP (or another negative errno) when this kernel cannot
 * track (no userfaultfd, no WP_ASYNC, no PAGEMAP_SCAN).
 */
int dirty_client_new(struct vm *vm, struct dirty_client **out);
/*
 * Get and clear: fills @bitmap (@npages bits, which must be dirty_npages(vm)) with the pages
 * written since this client's last fetch or its creation.  A write racing with the fetch is
 * either in this bitmap or in the next one, never lost.  -EIO if tracking broke (a kernel
 * error re-arming it): then nothing is known, and the caller must copy everything.
 */
int dirty_client_fetch(struct dirty_client *c, uint64_t *bitmap, size_t npages);
/* Give fetched pages back (a save that used them failed): the next fetch returns them too. */
void dirty_client_unfetch(struct dirty_client *c, const uint64_t *bitmap, size_t npages);
void dirty_client_free(struct dirty_client *c);

/* Pages of guest RAM: the size of a bitmap in bits. */
size_t dirty_npages(const struct vm *vm);
/* The words a bitmap of @npages bits needs. */
static inline size_t dirty_words(size_t npages)
{
	return (npages + 63) / 64;
}
static inline bool dirty_test(const uint64_t *bitmap, size_t page)
{
	return bitmap[page / 64] >> (page % 64) & 1;
}
/* The next run of set bits from page *@pg on: its first page in *@pg, its length (0: none). */
uint64_t dirty_next_run(const uint64_t *bitmap, size_t npages, uint64_t *pg);
/* Where page @pg is in khyve's mapping, and in *@left the pages of its region from it on. */
uint8_t *dirty_page_hva(const struct vm *vm, uint64_t pg, uint64_t *left);
/*
 * A fetch for a writer of pre-copy rounds (live migration, a restored VM's live checkpoint):
 * if tracking broke, every touched page counts as written (always right, only larger).
 * @count: the pages set in @bitmap.
 */
int dirty_harvest(struct dirty_client *c, struct vm *vm, uint64_t *bitmap, size_t npages,
		  uint64_t *count);

/*
 * A live checkpoint (snap/live.c) write-protects RAM with its own synchronous userfaultfd, and
 * a range belongs to one userfaultfd only: dirty_suspend hands RAM over (every client keeps
 * what was written so far), dirty_resume takes it back and counts every page present in RAM
 * as written (what happened meanwhile is not known page by page; see dirty.c).  Both are
 * no-ops when nothing tracks the VM; dirty_resume after a failure leaves tracking broken.
 */
int dirty_suspend(struct vm *vm);
int dirty_resume(struct vm *vm);
/* Is anything tracking @vm?  How many clients does it have? */
bool dirty_tracking(const struct vm *vm);
unsigned dirty_clients(const struct vm *vm);
/*
 * The VM is going away: tracking stops; its clients' fetches fail with -ENODEV from now on,
 * and each is still freed by its owner with dirty_client_free.
 */
void dirty_vm_free(struct vm *vm);
/* Open the userfaultfd now and keep it, for tracking after khyve gave up root (-o user=). */
void dirty_keep_uffd(void);

#endif
