#!/bin/sh
# /init of the havip VM lab. Generated files in /etc/vmlab/ say what to do:
#   modules  kernel modules to insmod (path and parameters), in dependency order
#   env.sh   environment for the test binaries (HAVIP_VM, HAVIP_BIN, ...)
#   tests.sh one "vmlab_run NAME DIR CMD..." line per test binary
# Marker lines on the console (each on a line of its own) tell the host what
# happened: VMLAB-BOOTED, VMLAB-MODULES, VMLAB-START, VMLAB-RESULT, VMLAB-DONE.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=linux

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /run/netns
hostname vmlab
echo "VMLAB-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"

loaded=0
failed=0
while read -r ko params; do
	# shellcheck disable=SC2086 # params are separate words
	if insmod "$ko" $params; then
		loaded=$((loaded + 1))
	else
		echo "VMLAB-MODULE-FAIL $ko"
		failed=$((failed + 1))
	fi
done </etc/vmlab/modules
echo "VMLAB-MODULES loaded=$loaded failed=$failed uptime=$(cut -d' ' -f1 /proc/uptime)"

ip link set lo up

. /etc/vmlab/env.sh

# vmlab_run NAME DIR CMD...: run one test binary in DIR (its testdata/ is
# there), then report its exit code on a line of its own.
vmlab_run() {
	name=$1
	dir=$2
	shift 2
	echo "VMLAB-START $name"
	(cd "$dir" && exec "$@")
	rc=$?
	printf '\nVMLAB-RESULT %s rc=%d\n' "$name" "$rc"
}

. /etc/vmlab/tests.sh

printf '\nVMLAB-DONE uptime=%s\n' "$(cut -d' ' -f1 /proc/uptime)"

case " $(cat /proc/cmdline) " in
*" vmlab.shell=1 "*)
	echo "VMLAB-SHELL: exit the shell (or Ctrl-A x) to power off"
	setsid cttyhack sh -l
	;;
esac
sync
poweroff -f
