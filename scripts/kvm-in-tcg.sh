#!/bin/sh
# Run a command with a real /dev/kvm on a host that has none.
#
#   scripts/kvm-in-tcg.sh [-c CPUS] [-m MEM] [-l LOG] [-S] COMMAND [ARG...]
#
# -c CPUS and -m MEM size the emulated machine (2, 12G), -l LOG takes its console instead of
# standard output.  Each of its CPUs is a host thread (QEMU's multi-threaded TCG).  There the
# guest kernel oopsed on an `int3` its own code patching left behind (a race of
# cross-modifying code, most likely KVM's LAPIC static keys, which change as VMs come and go),
# so a VM with a never-enabled LAPIC is held open for the whole job to keep them still; the
# emulated machine has still died under long heavy loads (a corrupted stack in its scheduler),
# so keep jobs short and rerun one that ends without an exit status.  -S has the CPUs take
# turns on one thread instead, which has no such race but stalls KVM's 1-vCPU guests for
# minutes (a soft lockup in the vCPU's thread).
#
# Boots Debian's own kernel under QEMU's software emulator (TCG) with its AMD SVM emulation
# (nested paging included), loads kvm-amd there, and runs COMMAND in this checkout with the
# host's whole file system shared over 9p (writes land on the host) and a fresh ext4 disk on
# /tmp (a sparse file of SCRATCH bytes, default 64G, gone afterwards), as a host's /tmp would
# be.  The exit status is COMMAND's.  KVM inside is the ordinary SVM KVM, so this also
# exercises the hardware-virtualisation paths a PVM host never takes.  Everything runs several
# times slower than on a KVM host: use it for correctness, and for ratios against a peer
# measured inside the same emulated machine, never for absolute figures.  Build on the host
# first: compiling inside is slow.  THP=always|madvise|never sets transparent huge pages
# (Debian's kernel: always).
#
# Needs root (9p passthrough), qemu-system-x86 and Debian's package archive; the kernel and
# busybox packages are fetched once into build/kvm-in-tcg/.
set -eu

cpus=2
mem=12G
log=
tcg_threads=multi
while getopts c:m:l:S opt; do
	case $opt in
	S) tcg_threads=single ;;
	c) cpus=$OPTARG ;;
	m) mem=$OPTARG ;;
	l) log=$OPTARG ;;
	*) sed -n '4p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '4p' "$0" >&2; exit 2; }

top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/build/kvm-in-tcg
mkdir -p "$dir"
command -v qemu-system-x86_64 >/dev/null || { echo "kvm-in-tcg: needs qemu-system-x86" >&2; exit 2; }

# The kernel (the newest of Debian's generic amd64 ones: userfaultfd's WP_ASYNC needs 6.7 or
# later) and busybox, unpacked once.
if [ ! -e "$dir/ready" ]; then
	rm -rf "$dir/pkg" "$dir/root" && mkdir -p "$dir/pkg"
	kpkg=${KVM_IN_TCG_KERNEL:-$(apt-cache search --names-only '^linux-image-[0-9].*-amd64$' |
		awk '{print $1}' | grep -v -e -dbg -e -unsigned -e -cloud- -e -rt- | sort -V | tail -1)}
	[ -n "$kpkg" ] || { echo "kvm-in-tcg: no linux-image package in the package lists (apt-get update?)" >&2; exit 2; }
	(cd "$dir/pkg" && apt-get download -q "$kpkg" busybox-static >/dev/null 2>&1) ||
		{ echo "kvm-in-tcg: cannot download $kpkg and busybox-static" >&2; exit 2; }
	for deb in "$dir"/pkg/*.deb; do dpkg -x "$deb" "$dir/root"; done
	rm -rf "$dir/pkg"
	depmod -b "$dir/root" "$(ls "$dir/root/lib/modules" | head -1)"
	touch "$dir/ready"
fi
kver=$(ls "$dir/root/lib/modules" | head -1)
# The modules, in the order they load (their dependencies first).
mods=$(for m in virtio_pci 9pnet_virtio 9p virtio_blk crc32c_generic ext4 kvm_amd; do
	modprobe -d "$dir/root" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ {print $2}')
[ -n "$mods" ] || { echo "kvm-in-tcg: no modules found for $kver" >&2; exit 2; }

# Each run has its own initramfs, job and exit status, so runs may overlap.
run=$(mktemp -d "$dir/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
# The initramfs: load the modules, mount the host's root, run the job in it, power off.
mkdir -p "$run/initrd/bin" "$run/initrd/mods" "$run/initrd/newroot" \
	"$run/initrd/proc" "$run/initrd/sys" "$run/initrd/dev"
cp "$dir/root/bin/busybox" "$run/initrd/bin/"
for f in $mods; do cp "$f" "$run/initrd/mods/"; done
cat >"$run/initrd/init" <<EOF
#!/bin/busybox sh
b=/bin/busybox
\$b mount -t proc proc /proc; \$b mount -t sysfs sys /sys; \$b mount -t devtmpfs dev /dev
for m in $(for f in $mods; do basename "$f"; done | tr '\n' ' '); do \$b insmod /mods/\$m || echo "kvm-in-tcg: insmod \$m failed"; done
\$b mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose host /newroot ||
	{ echo "kvm-in-tcg: cannot mount the host"; \$b poweroff -f; }
\$b mount -t proc proc /newroot/proc; \$b mount -t sysfs sys /newroot/sys
\$b mount -t devtmpfs dev /newroot/dev; \$b mkdir -p /newroot/dev/pts /newroot/dev/shm
\$b mount -t devpts devpts /newroot/dev/pts; \$b mount -t tmpfs shm /newroot/dev/shm
\$b mount -t ext4 /dev/vda /newroot/tmp && \$b chmod 1777 /newroot/tmp ||
	echo "kvm-in-tcg: no scratch disk for /tmp"
\$b ip link set lo up
[ -z "${THP:-}" ] || echo "${THP:-}" >/sys/kernel/mm/transparent_hugepage/enabled
[ -c /dev/kvm ] || echo "kvm-in-tcg: no /dev/kvm inside (no SVM in this QEMU?)"
\$b chroot /newroot /usr/bin/env -i HOME=\${HOME:-/root} TERM=dumb /bin/sh "$run/job.sh"
echo \$? >"/newroot$run/rc"; \$b sync
\$b poweroff -f
EOF
chmod +x "$run/initrd/init"
(cd "$run/initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$run/initrd.gz")

# The job: this checkout, the caller's PATH, the command with its words quoted.
{
	echo "export PATH='$PATH' USER=root LANG=C.UTF-8"
	echo "cd '$top' || exit 125"
	# A VM that lives as long as the job, with one vCPU whose LAPIC its guest never enables:
	# KVM's static keys for disabled LAPICs then stay on while the job's VMs come and go, so
	# the kernel never patches that code and the race the header describes has nothing to hit.
	cat <<-'PIN'
	py=/usr/bin/python3; [ -x $py ] || py=python3
	$py -c 'import fcntl, os, time
	kvm = os.open("/dev/kvm", os.O_RDWR)
	vm = fcntl.ioctl(kvm, 0xAE01, 0)
	fcntl.ioctl(vm, 0xAE60, 0)
	vcpu = fcntl.ioctl(vm, 0xAE41, 0)
	print("up", flush=True)
	time.sleep(1e9)' >"$0.pin" &
	n=0; until grep -q up "$0.pin" 2>/dev/null || [ $n -ge 300 ]; do sleep 0.2; n=$((n + 1)); done
	PIN
	printf 'exec'
	for a in "$@"; do printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"; done
	echo
} >"$run/job.sh"

truncate -s "${SCRATCH:-64G}" "$run/scratch.img"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$run/scratch.img"

out=${log:-/dev/stdout}
qemu-system-x86_64 -accel tcg,thread="$tcg_threads" -cpu max -smp "$cpus" -m "$mem" \
	-nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$dir/root/boot/vmlinuz-$kver" -initrd "$run/initrd.gz" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off" \
	-drive file="$run/scratch.img",format=raw,if=virtio,cache=unsafe \
	-virtfs local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap,id=host \
	</dev/null 2>&1 | sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' >"$out" || true
[ -s "$run/rc" ] || { echo "kvm-in-tcg: the emulated machine stopped without an exit status" >&2; exit 125; }
exit "$(cat "$run/rc")"
