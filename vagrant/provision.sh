#!/usr/bin/env bash
# Provision a Debian 12 machine for xdpgate: system packages (bcc comes from Debian,
# not PyPI), kernel headers where bcc looks for them, bpffs, and a venv with the
# project installed. Idempotent; used by the Vagrant VM, the README's quick start and CI.
#   bash vagrant/provision.sh [--test] [REPO_DIR]
# --test also installs what the test suite and the benchmarks need (vagrant, for
# `vagrant validate`; tcpdump). numpy (listing the flow table) is Debian's, as pinned in
# pyproject.toml, so pip finds it installed.
set -euo pipefail

with_tests=0
if [ "${1:-}" = "--test" ]; then
	with_tests=1
	shift
fi
repo="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
venv="${XDPGATE_VENV:-/opt/xdpgate/venv}"

if [ "$(id -u)" -ne 0 ]; then
	echo "provision.sh: must run as root (it installs packages and mounts bpffs)" >&2
	exit 1
fi

pkgs=(python3 python3-venv python3-pip python3-bpfcc libbpfcc linux-headers-amd64
	python3-numpy iproute2 iputils-ping nftables ipset ethtool procps kmod ca-certificates)
[ "$with_tests" = 1 ] && pkgs+=(vagrant tcpdump)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bcc compiles against /lib/modules/$(uname -r)/build. Where the running kernel has no
# headers package, point that path at Debian's headers: the XDP program only uses UAPI
# headers, which are the same.
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build" ] || [ -L "$kdir/build" -a ! -e "$kdir/build/include" ]; then
	# Debian splits them: -amd64 holds the generated files (build), -common the
	# sources (source).
	hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$hdr" ]; then
		echo "provision.sh: no kernel headers under /usr/src (install linux-headers-amd64)" >&2
		exit 1
	fi
	common="${hdr%-amd64}-common"
	[ -d "$common" ] || common="$hdr"
	mkdir -p "$kdir"
	ln -sfn "$hdr" "$kdir/build"
	ln -sfn "$common" "$kdir/source"
	echo "provision.sh: $kdir/build -> $hdr, source -> $common"
fi

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# bcc is imported from Debian's python3-bpfcc, so the venv uses the system Python
# and sees its site-packages.
if [ ! -x "$venv/bin/python" ]; then
	mkdir -p "$(dirname "$venv")"
	/usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q -e "$repo"
if [ "$with_tests" = 1 ]; then
	"$venv/bin/python" -m pip install -q -e "$repo[test]"
fi
"$venv/bin/python" -c 'import bcc, xdpgate.control' >/dev/null
echo "provision.sh: xdpgate installed in $venv (run $venv/bin/xdpgate)"
