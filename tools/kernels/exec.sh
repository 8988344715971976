#!/usr/bin/env bash
# go test -exec wrapper: runs one test binary as root in a qemu guest booted
# on the kernel that tools/kernels/prepare.sh made, and exits with its code.
#
# usage: KERNEL_DIR=<dir printed by prepare.sh> go test -exec tools/kernels/exec.sh ...
#
# The guest sees the host's / read-only over 9p, so the binary, the package
# directory and host tools (ip, nft, bash, curl, python3) are at their usual
# paths. The command (working directory, environment, argv) goes to a file
# in the cache that the kernel command line names; the guest's init runs it
# and writes its output to the second serial port between marker lines,
# ending with its exit code. The kernel log goes to a file, shown on failure.
#
# A guest that outlives the test's own -test.timeout by 30 s has stalled
# (the binary would have panicked with its goroutines by then):
# tools/kernels/stall.py then has it print every CPU's backtrace to its
# console, which is shown.
#
# KERNEL_SMP, KERNEL_MEM (MiB) and KERNEL_TIMEOUT (for timeout(1), the last
# resort) tune the guest.
set -uo pipefail
kdir=${KERNEL_DIR:?KERNEL_DIR must name a directory made by tools/kernels/prepare.sh}
[ -e "$kdir/ready" ] || { echo "exec.sh: $kdir is not prepared" >&2; exit 2; }
bin=$(realpath "$1")
shift

here=$(cd "$(dirname "$0")" && pwd)
run=$(mktemp -d "$kdir/run.XXXXXX")
watch=
trap '[ -n "$watch" ] && kill "$watch" 2>/dev/null; rm -rf "$run"' EXIT
# The guest has its own /tmp, /run and /dev: a binary there (go test -c -o
# /tmp/x) must be copied to where the guest can see it.
case $bin in /tmp/* | /run/* | /dev/* | /proc/* | /sys/*)
	cp "$bin" "$run/" && bin=$run/$(basename "$bin") ;;
esac

# A clone under /tmp (a CI checkout may be one) is bound into the guest's
# own /tmp at the same path: the module root, so testdata resolves too.
top=$PWD
while [ "$top" != / ] && [ ! -e "$top/go.mod" ]; do top=$(dirname "$top"); done
[ "$top" = / ] && top=$PWD
bind=
case $top in /tmp/*) bind=$top ;; esac

# The command: this environment, this directory, this argv.
{
	export -p
	# A host TMPDIR would be read-only in the guest; its /tmp is a tmpfs.
	echo 'export TMPDIR=/tmp'
	printf 'cd %q || exit 125\n' "$PWD"
	printf 'exec'
	printf ' %q' "$bin" "$@"
	echo
} >"$run/cmd"

mark=kernels-$RANDOM$RANDOM$RANDOM
kernel=$kdir/vmlinux
[ -e "$kernel" ] || kernel=$(ls "$kdir"/root/boot/vmlinuz-*)
# qboot reaches the kernel's PVH entry faster than SeaBIOS; both work.
bios=()
[ -e /usr/share/qemu/qboot.rom ] && bios=(-bios /usr/share/qemu/qboot.rom)
# TCG unless KERNEL_ACCEL=kvm: on the nested hosts we build on, KVM is
# there but broken (qemu aborts with "failed to set MSR 0x10a" under -cpu
# max, and a guest without that MSR hangs before its first console line).
accel=${KERNEL_ACCEL:-tcg}
# One host thread runs all of a guest's vCPUs in turn. With a thread each
# (qemu's default), a 6.1 guest now and then hung for good: while the
# kernel patched __schedule's tracepoint site as a test detached its
# sched_switch program, the other vCPU kept trapping on the patch's int3
# with its run queue locked (console shown by stall.py; never seen with one
# thread). go test -p 2 runs two guests at once, one per host core.
[ "$accel" = tcg ] && accel=tcg,thread=single

# The test's timeout in seconds (go test passes -test.timeout=20m0s), 0 for
# none.
timeout=0
for a in "$@"; do
	case $a in -test.timeout=*)
		timeout=$(echo "${a#*=}" | awk '{ s = 0; while (match($0, /^[0-9.]+(h|ms|m|s|us|µs|ns)/)) {
			n = substr($0, 1, RLENGTH); u = n; sub(/^[0-9.]+/, "", u); n += 0
			s += u == "h" ? n * 3600 : u == "m" ? n * 60 : u == "s" ? n : 0
			$0 = substr($0, RLENGTH + 1) } printf "%d", s }') ;;
	esac
done
ver=$(cat "$kdir/ready")
if [ "$timeout" -gt 0 ]; then
	(
		trap 'kill "$s" 2>/dev/null; exit' TERM
		sleep $((timeout + 30)) &
		s=$!
		wait "$s"
		echo "exec.sh: the guest outlived the test's timeout (${timeout}s) by 30 s: it has stalled" >&2
		python3 "$here/stall.py" "$run/monitor" >&2 ||
			echo "exec.sh: stall.py failed" >&2
	) &
	watch=$!
fi

# awk passes through what lies between the markers, holding one line back:
# init writes a newline before the end marker, which is not the test's. It
# saves the exit code in $run/rc; no file means the guest never reported.
#
# No guest outlives its test: timeout --foreground keeps qemu in the test's
# process group, so ^C stops it too, and setpriv --pdeathsig kills timeout
# and qemu when their parent dies, as when go test kills a test on timeout.
setpriv --pdeathsig KILL timeout --foreground -k 10 "${KERNEL_TIMEOUT:-30m}" \
	setpriv --pdeathsig KILL qemu-system-x86_64 \
	-nodefaults -no-user-config -display none -no-reboot \
	-accel "$accel" -cpu max -smp "${KERNEL_SMP:-2}" -m "${KERNEL_MEM:-2048}" \
	"${bios[@]}" -kernel "$kernel" -initrd "$kdir/initramfs.cpio" \
	-append "console=ttyS0 loglevel=4 panic=-1 unknown_nmi_panic panic_print=0x40 kcmd=$run/cmd kmark=$mark ${bind:+kbind=$bind }kmods=$kdir/root/lib/modules/$ver" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
	-monitor "unix:$run/monitor,server=on,wait=off" \
	-serial "file:$run/console.log" -serial stdio </dev/null 2>"$run/qemu.err" |
	awk -v mark="$mark" -v rcfile="$run/rc" '
		!on { if ($0 == mark " begin") on = 1; next }
		index($0, mark " rc=") == 1 { printf "%s", prev; print substr($0, length(mark) + 5) >rcfile; exit }
		{ if (held) print prev; prev = $0; held = 1; fflush() }'
if [ ! -s "$run/rc" ]; then
	echo "exec.sh: the guest gave no exit code (crash or timeout); qemu said:" >&2
	cat "$run/qemu.err" >&2
	echo "exec.sh: guest console (last 300 lines):" >&2
	tail -n 300 "$run/console.log" >&2
	exit 1
fi
exit "$(cat "$run/rc")"
