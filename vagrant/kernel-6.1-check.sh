#!/usr/bin/env bash
# Run the data-path tests on Debian 12's own kernel (6.1), whatever kernel this machine runs:
# a Debian 12 root (debootstrap) with linux-image-amd64, its headers, python3-bpfcc and a venv
# with this checkout, booted in QEMU; its init runs `pytest tests/datapath` and powers off.
# The verifier of 6.1 is stricter in places than newer ones (it refused every stage once), so
# this is the check to run after changing bpf/. Not part of CI: it takes 10-30 minutes (QEMU
# emulates the CPU where KVM cannot boot a stock kernel).
#   sudo bash vagrant/kernel-6.1-check.sh [WORK_DIR]      (default /var/tmp/xdpgate-k61)
#   XG_K61_TESTS="tests/datapath tests/netns" ...        (what pytest runs; default tests/datapath)
# Exit status: pytest's inside the VM (2 if the VM printed no result).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-/var/tmp/xdpgate-k61}
root=$work/root
[ "$(id -u)" -eq 0 ] || { echo "kernel-6.1-check: run as root" >&2; exit 1; }

need=()
for p in qemu-system-x86 debootstrap e2fsprogs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

mkdir -p "$work"
in_root() {  # in_root CMD: run CMD in the root, with proc, sys and dev mounted for it
	for d in proc sys dev; do mount --bind "/$d" "$root/$d"; done
	local rc=0
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		DEBIAN_FRONTEND=noninteractive bash -c "$1" || rc=$?
	for d in dev sys proc; do umount -l "$root/$d"; done
	return $rc
}
if [ ! -x "$root/opt/venv/bin/python" ]; then
	rm -rf "$root"
	mirror=$(grep -h '^URIs' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
	[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
	debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" \
		>"$work/debootstrap.log" 2>&1
	cp /etc/resolv.conf "$root/etc/"
	# a proxy's CA and pip settings, where this machine has them
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
	[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
	in_root 'apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates &&
		update-ca-certificates >/dev/null &&
		apt-get install -y -qq --no-install-recommends linux-image-amd64 linux-headers-amd64 \
			python3-bpfcc python3-numpy python3-venv python3-pip iproute2 iputils-ping nftables ipset \
			ethtool procps initramfs-tools kmod udev &&
		python3 -m venv --system-site-packages /opt/venv' >"$work/apt.log" 2>&1
fi

# this checkout, as committed, with its test tools
rm -rf "$root/opt/xdpgate"
mkdir -p "$root/opt/xdpgate"
git -C "$repo" archive HEAD | tar -x -C "$root/opt/xdpgate"
in_root "/opt/venv/bin/pip install -q '/opt/xdpgate[test]'" >"$work/pip.log" 2>&1

tests=${XG_K61_TESTS:-tests/datapath}
cat >"$root/opt/k61-init.sh" <<EOF
#!/bin/sh
# PID 1 of the check VM: what bcc and the tests need, the tests, power off.
export PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp; mount -t bpf bpf /sys/fs/bpf; mount -o remount,rw /
ip link set lo up
echo "### kernel \$(uname -r)" > /dev/ttyS0
cd /opt/xdpgate
python -m pytest -q -p no:cacheprovider $tests > /tmp/pytest.txt 2>&1
echo "### pytest rc=\$?" >> /tmp/pytest.txt
tail -40 /tmp/pytest.txt > /dev/ttyS0
echo "### done" > /dev/ttyS0
echo 1 > /proc/sys/kernel/sysrq; echo o > /proc/sysrq-trigger
sleep 5; poweroff -f
EOF
chmod +x "$root/opt/k61-init.sh"

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
rm -f "$work/disk.ext4"
mkfs.ext4 -q -F -d "$root" "$work/disk.ext4" 8G
timeout "${XG_K61_TIMEOUT:-5400}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 4096 \
	-smp 2 -kernel "$kernel" -initrd "$initrd" -nographic -no-reboot -nic none \
	-append "root=/dev/vda rw console=ttyS0 panic=-1 init=/opt/k61-init.sh" \
	-drive "file=$work/disk.ext4,format=raw,if=virtio" | tee "$work/console.log" |
	sed -n '/^### /,$p'
rc=$(sed -n 's/^### pytest rc=\([0-9]*\).*/\1/p' "$work/console.log" | tail -n 1)
exit "${rc:-2}"
