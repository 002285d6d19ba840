// SPDX-License-Identifier: BSD-2-Clause
/*
 * khyve: parse the command line into a configuration, build the machine (or restore one from a
 * snapshot), run it until it ends, and exit with bhyve's status for how it ended.
 */
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bhyve_opts.h"
#include "ctl/ctl.h"
#include "dev/pc/pm.h"
#include "gdb/gdbstub.h"
#include "keys.h"
#include "log.h"
#include "machine.h"
#include "options.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "snap/snapshot.h"
#include "sandbox.h"
#include "user.h"
#include "vcpu.h"
#include "vm.h"

static int die(const char *msg)
{
	log_error("%s", msg);
	return VM_EXIT_ERROR;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * Signals, as bhyve: SIGTERM presses the ACPI power button so the guest can shut down cleanly;
 * a second SIGTERM, or SIGINT/SIGHUP, ends the VM at once (status 4).  A paused guest cannot
 * see the button: the press waits for the resume (status shows "pending": "poweroff").
 * khyve(8) SIGNALS is the user's description of this.
 */
static void on_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;
	static bool asked;
	struct dev *pm;

	if (read(vm->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	pm = vm_find_dev(vm, "pm");
	if (si.ssi_signo == SIGTERM && !asked && pm && vm->paused) {
		log_info("SIGTERM while paused: the guest is asked to power off when "
			 "it resumes (khyvectl --resume); another SIGTERM ends it now");
		asked = true;
		vm->poweroff_pending = true;
		return;
	}
	if (si.ssi_signo == SIGTERM && !asked && pm) {
		log_info("SIGTERM: asking the guest to power off");
		asked = true;
		pm_power_button(pm);
		return;
	}
	log_info("signal %u: stopping the VM", si.ssi_signo);
	vm_request_exit(vm, VM_EXIT_ERROR);
}

static void signals_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* Blocked first thing in main, before any device starts a thread: they all inherit it. */
static void signals_block(void)
{
	sigset_t set;

	signals_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int signals_start(struct vm *vm, char *err, size_t errlen)
{
	sigset_t set;
	int ret;

	signals_set(&set);
	vm->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	ret = vm->sigfd < 0 ? -errno : evloop_add_fd(&vm->ev, vm->sigfd, EPOLLIN, on_signal, vm);
	if (ret)
		snprintf(err, errlen, "signal handling: %s", strerror(-ret));
	return ret;
}

static int run(struct vm *vm, const struct timespec *t0, char *err, size_t errlen)
{
	bool timing, incoming;
	int status;

	if (signals_start(vm, err, errlen) || ctl_start(vm, err, errlen))
		return -1;
	/* -G: its port is bound before privileges go; -G w holds the vCPUs from here. */
	if (gdbstub_open(vm, err, errlen))
		return -1;
	/* -S: with whatever privilege locking memory needs, before it goes. */
	if (bhyve_opts_wire(vm, err, errlen))
		return -1;
	/* Everything that needs root is open: -o user=NAME gives it up before the guest runs. */
	if (user_drop(vm->cfg, err, errlen))
		return -1;
	/* Then the system calls a compromised device could make are cut down (sandbox.c). */
	if (sandbox_start(vm, err, errlen))
		return -1;
	/* -R: the source hands over only now, when nothing is left here that could fail. */
	if (migrate_incoming_go(err, errlen))
		return -1;
	/*
	 * -R: the vCPU threads are made held, so that nothing that can fail is left when the
	 * source is told the guest runs here, and telling it is not delayed behind them.
	 */
	incoming = migrate_incoming_pending();
	if (incoming)
		vcpus_pause(vm);
	if (machine_start(vm, err, errlen) || gdbstub_go(vm, err, errlen))
		return -1;
	if (incoming) {
		migrate_incoming_running();
		vcpus_resume(vm);
	}
	/* -R: what receiving kept goes only now that the guest runs. */
	migrate_incoming_cleanup();
	/* debug.timing: how long from start until the guest runs (bench/ reads this). */
	if (!config_get_bool(vm->cfg, "debug.timing", false, &timing) && timing)
		log_info("guest running %.3f ms after start", ms_since(t0));
	status = vm_wait_exit(vm);
	/* A live checkpoint still being written is given up (its client is told so). */
	snap_save_live_abort(vm);
	gdbstub_stop(vm);
	/* So is a live migration still in its rounds (its client is told so). */
	migrate_live_abort(vm);
	ctl_stop(vm);
	return status;
}

/* Parse, then boot or restore; 0 with a VM ready to run, 1 when there is nothing to run. */
static int setup(int argc, char **argv, struct config *cfg, struct vm *vm, char *err, size_t errlen)
{
	struct options opt;
	int ret;

	ret = options_parse(argc, argv, cfg, &opt, err, errlen);
	if (ret)
		return ret;
	/* log.level and log.file: from the command line only (a snapshot never sets them). */
	ret = log_configure(config_get(cfg, "log.level"), 0,
			    opt.dump_config ? NULL : config_get(cfg, "log.file"), err, errlen);
	if (ret)
		return ret;
	/* A restore checks once it knows the snapshot's devices (snap_restore). */
	if (!opt.restore && !opt.incoming && (ret = config_check_keys(cfg, NULL, err, errlen)))
		return ret;
	/* -R: the filter is compiled while waiting, not in the migration's downtime. */
	if (opt.incoming && (ret = sandbox_prepare(cfg, err, errlen)))
		return ret;
	if (opt.incoming)
		return migrate_incoming(vm, cfg, opt.incoming, err, errlen);
	if (opt.dump_config && !opt.restore) {
		config_dump(cfg, stdout);
		return 1;
	}
	if (opt.restore)
		return snap_restore(vm, cfg, opt.restore, opt.dump_config, err, errlen);
	ret = machine_check_config(cfg, false, err, errlen);
	return ret ? ret : machine_create(vm, cfg, false, err, errlen);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct vm vm;
	char err[2048] = "";
	struct timespec t0;
	int ret, status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A vanished control client must not kill the VM. */
	signal(SIGPIPE, SIG_IGN);
	signals_block();
	config_init(&cfg);
	ret = setup(argc, argv, &cfg, &vm, err, sizeof(err));
	if (ret) {
		config_free(&cfg);
		return ret == 1 ? 0 : die(err); /* 1: help or configuration printed */
	}
	status = run(&vm, &t0, err, sizeof(err));
	/* -R: a failure before the guest ran here; the source resumes it. */
	if (status < 0)
		migrate_incoming_refuse(err);
	machine_destroy(&vm);
	config_free(&cfg);
	if (status < 0)
		return die(err);
	if (status == VM_EXIT_SUSPENDED)
		return 0;
	return status;
}
