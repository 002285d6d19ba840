// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3 entry: every CPU arrives in ring3_main() from
 * cpu_enter(). The BSP reads the PVH start info, brings up the platform
 * and the APs, then runs the workload chosen on the command line.
 */
#include "user.h"

extern volatile u32 start_info_pa, mb_info_pa;	/* head.S */
extern u16 kern_pm1a_evt, kern_pm1a_cnt, kern_pm1b_cnt, kern_slp_typ;
extern char _bss_start[], _bss_end[];

struct memmap_entry memmap[MEMMAP_MAX];
u32 memmap_count;
static char cmdline[1024];

/* Copy what we need out of hvm_start_info before anything can clobber it. */
static u64 start_info_read(void)
{
	const u8 *si = (const u8 *)(u64)start_info_pa;
	const char *cl;
	const u8 *mm;
	u32 i, n;

	if (!si || *(const u32 *)si != PVH_MAGIC)
		return ~0ull;
	cl = (const char *)*(const u64 *)(si + 24);
	for (i = 0; cl && cl[i] && i < sizeof(cmdline) - 1; i++)
		cmdline[i] = cl[i];
	mm = (const u8 *)*(const u64 *)(si + 40);
	n = *(const u32 *)(si + 4) >= 1 ? *(const u32 *)(si + 48) : 0;
	for (i = 0; mm && i < n && i < MEMMAP_MAX; i++) {
		memmap[i].addr = *(const u64 *)(mm + 24 * i);
		memmap[i].size = *(const u64 *)(mm + 24 * i + 8);
		memmap[i].type = *(const u32 *)(mm + 24 * i + 16);
	}
	memmap_count = i;
	return *(const u64 *)(si + 32);
}

/* Multiboot v1 (a boot loader started us): command line and memory map; RSDP by scan. */
static u64 mb_info_read(void)
{
	const u8 *mbi = (const u8 *)(u64)mb_info_pa;
	u32 flags = *(const u32 *)mbi, i, n = 0;

	if (flags & (1u << 2)) {
		const char *cl = (const char *)(u64)*(const u32 *)(mbi + 16);

		for (i = 0; cl[i] && i < sizeof(cmdline) - 1; i++)
			cmdline[i] = cl[i];
	}
	if (flags & (1u << 6)) {
		const u8 *mm = (const u8 *)(u64)*(const u32 *)(mbi + 48);
		const u8 *end = mm + *(const u32 *)(mbi + 44);

		for (; mm < end && n < MEMMAP_MAX; mm += *(const u32 *)mm + 4, n++) {
			memmap[n].addr = *(const u64 *)(mm + 4);
			memmap[n].size = *(const u64 *)(mm + 12);
			memmap[n].type = *(const u32 *)(mm + 20);
		}
	}
	memmap_count = n;
	return 0;
}

/* Put the BSP first in plat.apic_id[], so index == our CPU number. */
static void cpus_order(u32 bsp_apic)
{
	u32 i;

	for (i = 1; i < plat.ncpus; i++) {
		if (plat.apic_id[i] == bsp_apic) {
			plat.apic_id[i] = plat.apic_id[0];
			plat.apic_id[0] = bsp_apic;
		}
	}
}

static void platform_init(u64 rsdp)
{
	int err = acpi_parse(rsdp);

	if (err)
		fail_final("acpi: %s", err == -1 ? "no RSDP" : "MADT/FADT missing");
	kern_pm1a_evt = plat.pm1a_evt;
	kern_pm1a_cnt = plat.pm1a_cnt;
	kern_pm1b_cnt = plat.pm1b_cnt;
	kern_slp_typ = plat.slp_typa;
	hpet_init();
	if (tsc_calibrate())
		fail_final("cannot calibrate the TSC (no HPET, no PM timer)");
	if (opt.mode == MODE_SELFTEST)
		watchdog_deadline = rdtsc() + 30 * tsc_hz;
	lapic_init();
	cpus_order(lapic_id());
	ioapic_mask_all();
	power_button_arm();
	lapic_timer_count = lapic_timer_calibrate(100);
	lapic_timer_periodic(lapic_timer_count);
}

static void __attribute__((noreturn)) bsp_main(void)
{
	u64 rsdp;

	memset(_bss_start, 0, _bss_end - _bss_start);
	memset(percpu[0], 0, PERCPU_CLEAR_SIZE);
	rsdp = mb_info_pa && !start_info_pa ? mb_info_read() : start_info_read();
	uart_init();
	if (rsdp == ~0ull)
		fail_final("bad PVH start info at 0x%x", start_info_pa);
	cmdline_parse(cmdline);
	platform_init(rsdp);
	cur_check = "smp";
	smp_start();
	cpus[0].apic_id = lapic_id();
	cpus[0].alive = 1;
	pr("testguest: %s, %u/%u cpus, tsc %lu kHz\n",
	   opt.mode == MODE_COUNTER ? "counter" :
	   opt.mode == MODE_SELFTEST ? "selftest" :
	   opt.mode == MODE_UART ? "uart" :
	   opt.mode == MODE_AHCI ? "ahci" :
	   opt.mode == MODE_AHCIBENCH ? "ahcibench" :
	   opt.mode == MODE_CLOCKS ? "clocks" :
	   opt.mode == MODE_CONSOLE ? "console" :
	   opt.mode == MODE_ECHO ? "echo" : vio_mode_name(),
	   ncpus_up, plat.ncpus, tsc_hz / 1000);
	if (opt.mode == MODE_COUNTER)
		counter_run();
	if (opt.mode == MODE_UART)
		uart_run();
	if (opt.mode == MODE_AHCI)
		ahci_run();
	if (opt.mode == MODE_AHCIBENCH)
		ahcibench_run();
	if (opt.mode == MODE_CLOCKS)
		clocks_run();
	if (opt.mode == MODE_CONSOLE)
		console_run();
	if (opt.mode == MODE_ECHO)
		echo_run();
	if (opt.mode != MODE_SELFTEST)
		vio_run();
	selftest_run();
}

void ring3_main(u32 cpu)
{
	if (cpu == 0)
		bsp_main();
	ap_main(cpu);
}
