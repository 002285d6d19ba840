// SPDX-License-Identifier: BSD-2-Clause
/*
 * Waiting on the live savers' threads, for test_live and test_livecopy (and their _faults):
 * a flag a saver's callback raises and the test waits for, and a "guest" write on a thread
 * of its own that is seen waiting in userfaultfd (a page protected in the pause), as a
 * vCPU's would, until the writer lets it go.
 */
#ifndef KHYVE_TESTS_LIVESYNC_H
#define KHYVE_TESTS_LIVESYNC_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

struct ls_flag {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool up;
};

#define LS_FLAG_INIT                                                       \
	{                                                                  \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false \
	}

/* A saver's callback (void (*)(void *opaque)), with the flag as its opaque. */
static inline void ls_raise(void *opaque)
{
	struct ls_flag *f = opaque;

	pthread_mutex_lock(&f->lock);
	f->up = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static inline void ls_wait(struct ls_flag *f)
{
	pthread_mutex_lock(&f->lock);
	while (!f->up)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

/* ---- a guest write that waits for the writer ---- */

struct gwrite {
	pthread_t thread;
	void (*fill)(uint64_t pg, unsigned gen);
	uint64_t pg;
	unsigned gen;
	atomic_int tid;
};

static inline void *gwrite_main(void *arg)
{
	struct gwrite *g = arg;

	atomic_store(&g->tid, (int)syscall(SYS_gettid));
	g->fill(g->pg, g->gen);
	return NULL;
}

/* Is thread @tid waiting in the kernel for userfaultfd to let its write go? */
static inline bool waits_on_uffd(int tid)
{
	char p[64], wchan[64] = "";
	FILE *f;

	snprintf(p, sizeof(p), "/proc/self/task/%d/wchan", tid);
	f = fopen(p, "r");
	if (!f)
		return false;
	if (!fgets(wchan, sizeof(wchan), f))
		wchan[0] = '\0';
	fclose(f);
	return !strcmp(wchan, "handle_userfault");
}

/* A thread that writes generation @gen of page @pg with @fill; returns once it waits. */
static inline void gwrite_start(struct gwrite *g, void (*fill)(uint64_t pg, unsigned gen),
				uint64_t pg, unsigned gen)
{
	g->fill = fill;
	g->pg = pg;
	g->gen = gen;
	atomic_store(&g->tid, 0);
	assert_int_equal(pthread_create(&g->thread, NULL, gwrite_main, g), 0);
	while (!atomic_load(&g->tid))
		usleep(1000);
	/* Its write to a page protected in the pause waits, as a vCPU's would. */
	for (unsigned i = 0; !waits_on_uffd(atomic_load(&g->tid)); i++) {
		if (i == 10000)
			fail_msg("the write to page %llu does not wait", (unsigned long long)pg);
		usleep(1000);
	}
}

#endif
