// SPDX-License-Identifier: BSD-2-Clause
/* Snapshot chains: resolving the parents of an incremental snapshot, the page index. */
#include "snap/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snap/memory.h"
#include "snap/trust.h"
#include "sstream.h"

static int chain_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int chain_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/*
 * The same memory layout: a page of one link is the same guest page in the other.  Where
 * the memory area starts and the regions' file offsets need no comparing: every opened file's
 * area is at SNAP_MEM_ALIGN and its regions tile it in order (snap_file_open, check_memmap),
 * so equal sizes make them equal.
 */
static bool same_layout(const struct snap_file *a, const struct snap_file *b)
{
	if (a->mem_size != b->mem_size || a->nregions != b->nregions)
		return false;
	for (unsigned i = 0; i < a->nregions; i++)
		if (a->regions[i].gpa != b->regions[i].gpa ||
		    a->regions[i].size != b->regions[i].size)
			return false;
	return true;
}

static int chain_grow(struct snap_chain *c)
{
	struct snap_file **f = realloc(c->file, (c->nlinks + 1) * sizeof(*f));
	char **n;

	if (!f)
		return -ENOMEM;
	c->file = f;
	n = realloc(c->name, (c->nlinks + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->name = n;
	c->file[c->nlinks] = NULL;
	c->name[c->nlinks] = NULL;
	return 0;
}

/*
 * Open the parent of link @k from the directory @dfd, check it is the file the link was made
 * from, and append it.  @seen: the links' (device, inode), to refuse a loop outright.
 */
static int open_parent(struct snap_chain *c, unsigned k, int dfd, const char *dir,
		       struct stat *seen, char *err, size_t errlen)
{
	const struct snap_file *child = c->file[k];
	const struct snap_parent *p = &child->parent;
	char show[PATH_MAX + 300], want[2 * SNAP_ID_BYTES + 1], got[2 * SNAP_ID_BYTES + 1];
	uint8_t id[SNAP_ID_BYTES];
	struct snap_file *f;
	struct stat st;
	int fd, ret;

	snprintf(show, sizeof(show), "%s/%s", dir, p->name);
	ret = chain_grow(c);
	if (ret)
		return ret;
	c->name[k + 1] = strdup(show);
	f = c->file[k + 1] = calloc(1, sizeof(*f));
	if (f)
		f->fd = -1;
	/* Counted even when one of the two failed: snap_chain_close frees the other. */
	c->nlinks++;
	if (!f || !c->name[k + 1])
		return -ENOMEM;
	/* Not a path: a name in the tip's directory, never through a symbolic link. */
	fd = openat(dfd, p->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		if (errno == ELOOP)
			return chain_fail(
				err, errlen, ret,
				"snapshot %s: its parent %s is a symbolic link (the links "
				"of a chain must be files in its directory)",
				c->name[k], show);
		return chain_fail(err, errlen, ret, "snapshot %s: its parent %s is missing: %s",
				  c->name[k], show, strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return chain_fail(err, errlen, ret, "snapshot %s: its parent %s: %s", c->name[k],
				  show, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return chain_fail(err, errlen, -EINVAL,
				  "snapshot %s: its parent %s is not a regular file", c->name[k],
				  show);
	}
	for (unsigned i = 0; i <= k; i++)
		if (seen[i].st_dev == st.st_dev && seen[i].st_ino == st.st_ino) {
			close(fd);
			return chain_fail(err, errlen, -ELOOP,
					  "snapshot %s: the chain loops: its parent %s is %s",
					  c->name[k], show, c->name[i]);
		}
	seen[k + 1] = st;
	/* Memory is checked later, only where this link's pages are still the newest. */
	ret = snap_file_open_fd(f, fd, show, false, err, errlen);
	if (ret)
		return ret;
	ret = snap_file_identity(f, id);
	if (ret)
		return ret;
	if (memcmp(id, p->id, SNAP_ID_BYTES)) {
		snap_id_hex(p->id, want);
		snap_id_hex(id, got);
		return chain_fail(err, errlen, -ESTALE,
				  "snapshot %s: its parent %s has changed since it was taken "
				  "(identity %.16s..., expected %.16s...): it is not the file this "
				  "snapshot was made from",
				  c->name[k], show, got, want);
	}
	if (f->has_parent ? f->parent.depth + 1 != p->depth : p->depth != 1)
		return chain_fail(err, errlen, -EINVAL,
				  "snapshot %s: chain depth %u does not follow its parent %s (%u)",
				  c->name[k], p->depth, show, f->has_parent ? f->parent.depth : 0);
	if (!same_layout(child, f))
		return chain_fail(err, errlen, -EINVAL,
				  "snapshot %s: its parent %s has another memory layout",
				  c->name[k], show);
	return 0;
}

/* For each page, the newest link with data for it: the tip first, each page set once. */
static int build_index(struct snap_chain *c)
{
	const struct snap_file *tip = c->file[0];

	c->npages = tip->mem_size / SNAP_PAGE;
	c->owner = malloc((c->npages ? c->npages : 1) * sizeof(*c->owner));
	if (!c->owner)
		return -ENOMEM;
	memset(c->owner, 0xff, c->npages * sizeof(*c->owner));
	for (unsigned k = 0; k < c->nlinks; k++) {
		const struct snap_file *f = c->file[k];

		/* Extents are checked at open: page-aligned, inside the memory area. */
		for (unsigned i = 0; i < f->nextents; i++) {
			uint64_t p0 = (f->extents[i].file_offset - f->mem_offset) / SNAP_PAGE;
			uint64_t n = f->extents[i].length / SNAP_PAGE;

			for (uint64_t p = p0; p < p0 + n; p++)
				if (c->owner[p] == SNAP_NO_LINK)
					c->owner[p] = (uint16_t)k;
		}
	}
	return 0;
}

/* Does some page of extent @e of link @k still have its newest copy there? */
static bool extent_used(const struct snap_chain *c, unsigned k, const struct snap_extent *e)
{
	uint64_t p0 = (e->file_offset - c->file[k]->mem_offset) / SNAP_PAGE;

	for (uint64_t p = p0; p < p0 + e->length / SNAP_PAGE; p++)
		if (c->owner[p] == k)
			return true;
	return false;
}

static int verify_parents(struct snap_chain *c, char *err, size_t errlen)
{
	for (unsigned k = 1; k < c->nlinks; k++) {
		const struct snap_file *f = c->file[k];

		for (unsigned i = 0; i < f->nextents; i++) {
			int ret;

			if (!extent_used(c, k, &f->extents[i]))
				continue;
			ret = snap_file_verify_extent(f, i, c->name[k], err, errlen);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int snap_chain_open(struct snap_chain *c, struct snap_file *tip, const char *tip_path,
		    bool verify_memory, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	struct stat *seen = NULL;
	int dfd = -1, ret;

	memset(c, 0, sizeof(*c));
	if (strlen(tip_path) >= sizeof(dir))
		return chain_fail(err, errlen, -ENAMETOOLONG, "snapshot %s: path too long",
				  tip_path);
	ret = chain_grow(c);
	if (ret) {
		/* The first array may be there without the second. */
		snap_chain_close(c);
		return chain_fail(err, errlen, ret, "snapshot %s: its chain: %s", tip_path,
				  strerror(-ret));
	}
	c->file[0] = tip;
	c->name[0] = strdup(tip_path);
	c->nlinks = 1;
	if (!c->name[0]) {
		ret = -ENOMEM;
		goto fail;
	}
	if (tip->has_parent) {
		strcpy(tmp, tip_path);
		snprintf(dir, sizeof(dir), "%s", dirname(tmp));
		seen = calloc(SNAP_CHAIN_MAX, sizeof(*seen));
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (!seen) {
			ret = -ENOMEM;
			goto fail;
		}
		if (dfd < 0 || fstat(tip->fd, &seen[0]) < 0) {
			ret = chain_fail(err, errlen, -errno, "snapshot %s: its directory %s: %s",
					 tip_path, dir, strerror(errno));
			goto fail;
		}
	}
	while (!ret && c->file[c->nlinks - 1]->has_parent) {
		if (c->nlinks >= SNAP_CHAIN_MAX) {
			ret = chain_fail(
				err, errlen, -E2BIG,
				"snapshot %s: its chain is longer than %u links (merge it: "
				"khyvectl snapshot merge)",
				tip_path, SNAP_CHAIN_MAX);
			break;
		}
		ret = open_parent(c, c->nlinks - 1, dfd, dir, seen, err, errlen);
	}
	if (!ret)
		ret = build_index(c);
	if (!ret && verify_memory)
		ret = verify_parents(c, err, errlen);
fail:
	free(seen);
	if (dfd >= 0)
		close(dfd);
	if (ret && errlen && !err[0])
		chain_fail(err, errlen, ret, "snapshot %s: its chain: %s", tip_path,
			   strerror(-ret));
	if (ret)
		snap_chain_close(c);
	return ret;
}

void snap_chain_close(struct snap_chain *c)
{
	for (unsigned k = 0; k < c->nlinks; k++) {
		if (k && c->file[k]) {
			snap_file_close(c->file[k]);
			free(c->file[k]);
		}
		free(c->name[k]);
	}
	free(c->file);
	free(c->name);
	free(c->owner);
	memset(c, 0, sizeof(*c));
}

uint64_t snap_chain_run(const struct snap_chain *c, uint64_t page, unsigned *link)
{
	const struct snap_file *tip = c->file[0];
	uint64_t end = 0, p;

	if (page >= c->npages)
		return 0;
	/* The region @page is in: runs never cross into the next one. */
	for (unsigned i = 0; i < tip->nregions; i++) {
		end += tip->regions[i].size / SNAP_PAGE;
		if (page < end)
			break;
	}
	if (end > c->npages)
		end = c->npages;
	*link = c->owner[page];
	for (p = page + 1; p < end && c->owner[p] == *link; p++)
		;
	return p - page;
}

int snap_chain_data_extents(const struct snap_chain *c, struct snap_extent **out, unsigned *n)
{
	const uint64_t max = SNAP_EXTENT_MAX / SNAP_PAGE;
	struct snap_extent *e = NULL;
	unsigned cap = 0, link;
	uint64_t len;

	*n = 0;
	for (uint64_t p = 0; (len = snap_chain_run(c, p, &link)); p += len) {
		if (link == SNAP_NO_LINK)
			continue;
		for (uint64_t q = p, k; q < p + len; q += k) {
			uint64_t off = c->file[0]->mem_offset + q * SNAP_PAGE;
			struct snap_extent *last = *n ? &e[*n - 1] : NULL;

			/* Runs of different links that touch make one extent. */
			if (last && last->file_offset + last->length == off &&
			    last->length < SNAP_EXTENT_MAX) {
				k = (SNAP_EXTENT_MAX - last->length) / SNAP_PAGE;
				k = k < p + len - q ? k : p + len - q;
				last->length += k * SNAP_PAGE;
				continue;
			}
			k = p + len - q < max ? p + len - q : max;
			if (*n == cap) {
				struct snap_extent *m;

				cap = cap ? cap * 2 : 256;
				m = realloc(e, cap * sizeof(*e));
				if (!m) {
					free(e);
					return -ENOMEM;
				}
				e = m;
			}
			e[(*n)++] = (struct snap_extent){ off, k * SNAP_PAGE, 0 };
		}
	}
	*out = e;
	return 0;
}

/* ---- merge ---- */

struct merger {
	struct snap_writer w;
	struct snap_file map; /* regions and extents of the output */
	unsigned cap;
	struct snap_merge_result *res;
};

static int merge_extent(struct merger *m, uint64_t off, const uint8_t *p, uint64_t len)
{
	int ret = snap_writer_memory(&m->w, off, p, len);

	if (ret)
		return ret;
	if (m->map.nextents == m->cap) {
		unsigned cap = m->cap ? m->cap * 2 : 1024;
		struct snap_extent *e = realloc(m->map.extents, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		m->map.extents = e;
		m->cap = cap;
	}
	m->map.extents[m->map.nextents++] = (struct snap_extent){ m->w.mem_offset + off, len,
								  snap_checksum(p, len) };
	return 0;
}

/* @len bytes of memory area at @off from link @f: the non-zero pages, in extents. */
static int merge_chunk(struct merger *m, const struct snap_file *f, uint64_t off, uint64_t len,
		       uint8_t *buf)
{
	uint64_t run = 0, start = 0;
	int ret = 0;

	for (uint64_t got = 0; got < len;) {
		ssize_t n = pread(f->fd, buf + got, len - got, (off_t)(f->mem_offset + off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (uint64_t)n;
	}
	for (uint64_t p = 0; p < len && !ret; p += SNAP_PAGE) {
		if (snap_page_is_zero(buf + p)) {
			m->res->zero_pages++;
			if (run)
				ret = merge_extent(m, off + start, buf + start, run);
			run = 0;
			continue;
		}
		m->res->mem_pages++;
		if (!run)
			start = p;
		run += SNAP_PAGE;
	}
	if (!ret && run)
		ret = merge_extent(m, off + start, buf + start, run);
	return ret;
}

static int merge_memory(struct merger *m, const struct snap_chain *c)
{
	const uint64_t max = SNAP_EXTENT_MAX / SNAP_PAGE;
	uint8_t *buf = malloc(SNAP_EXTENT_MAX);
	unsigned link;
	uint64_t len;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t p = 0; !ret && (len = snap_chain_run(c, p, &link)); p += len) {
		if (link == SNAP_NO_LINK)
			continue;
		for (uint64_t q = p; q < p + len && !ret; q += max) {
			uint64_t n = p + len - q < max ? p + len - q : max;

			ret = merge_chunk(m, c->file[link], q * SNAP_PAGE, n * SNAP_PAGE, buf);
		}
	}
	free(buf);
	return ret;
}

/* Every section of the tip but its chain and memory map, as they are. */
static int merge_sections(struct merger *m, const struct snap_file *tip)
{
	for (unsigned i = 0; i < tip->nsections; i++) {
		const struct snap_section *sec = &tip->sections[i];
		void *buf;
		int ret;

		if (sec->type == SNAP_SEC_CHAIN || sec->type == SNAP_SEC_MEMMAP)
			continue;
		ret = snap_file_read(tip, sec, &buf);
		if (ret)
			return ret;
		/* The table's checksum was checked at open; the bytes read must still match. */
		if (snap_checksum(buf, sec->length) != sec->checksum)
			ret = -EIO;
		if (!ret)
			ret = snap_writer_section(&m->w, sec->type, sec->id, sec->version, buf,
						  sec->length);
		free(buf);
		if (ret)
			return ret;
	}
	return 0;
}

int snap_chain_merge(const struct snap_chain *c, const char *out, const uint8_t *key,
		     struct snap_merge_result *res, char *err, size_t errlen)
{
	const struct snap_file *tip = c->file[0];
	struct merger m = { .res = res };
	struct sstream s;
	int ret;

	memset(res, 0, sizeof(*res));
	ret = snap_writer_open(&m.w, out, tip->mem_size, err, errlen);
	if (ret)
		return ret;
	snap_writer_direct(&m.w);
	if (key)
		snap_writer_set_key(&m.w, key);
	m.map.nregions = tip->nregions;
	memcpy(m.map.regions, tip->regions, sizeof(m.map.regions));
	ret = merge_sections(&m, tip);
	if (!ret)
		ret = merge_memory(&m, c);
	if (!ret) {
		ss_init_save(&s);
		snap_memmap_io(&s, &m.map);
		ret = ss_error(&s);
		if (!ret)
			ret = snap_writer_section(&m.w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len);
		ss_free(&s);
	}
	free(m.map.extents);
	if (ret) {
		snprintf(err, errlen, "merging into %s: %s", out, strerror(-ret));
		snap_writer_abort(&m.w);
		return ret;
	}
	res->bytes = m.w.bytes;
	res->authenticated = key != NULL;
	return snap_writer_commit(&m.w, err, errlen);
}
