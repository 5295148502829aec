#!/usr/bin/env bash
# lvsd-vm.sh -- run one command inside a throw-away qemu VM whose kernel has real IPVS.
#
# The host kernel may lack IPVS (CONFIG_IP_VS unset). This boots Debian's stock
# linux-image-6.1.0-N-amd64 (ip_vs and every scheduler as modules) with a tiny busybox
# initramfs; the guest mounts the host's / over virtio-9p (read-only, with a RAM overlay on top)
# and chroots into it, so the host's python, virtualenv, pytest and ipvsadm all work inside the
# guest at the same paths. One read-write share (--out) carries results back to the host.
#
#   lvsd-vm.sh [options] [--] CMD [ARG...]   run CMD in the guest (cwd = the caller's cwd)
#   lvsd-vm.sh --build                      only fetch + build the kernel/initramfs cache
#   lvsd-vm.sh --print-kernel               print the Debian kernel package that would be used
#
# Options:
#   --out DIR      host dir mounted read-write in the guest at the same path (default: a fresh
#                  temp dir, removed afterwards); the guest sees it as $LVSD_VM_OUT
#   --env K=V      export K=V to CMD inside the guest (repeatable); CI is passed through
#   --net          give the guest a user-mode NIC (guest 10.0.2.15, host loopback = 10.0.2.2)
#   --mem MB (1024)   --smp N (1)   --timeout SEC (600)   --rebuild
#   env LVSD_VM_CACHE  cache dir (default ${XDG_CACHE_HOME:-~/.cache}/lvsd-ipvs-vm)
#   env LVSD_VM_KPKG   force a kernel package (e.g. linux-image-6.1.0-56-amd64)
#   env QEMU_EXTRA     extra qemu arguments (e.g. "-accel kvm -cpu host" on a real VT-x host)
#
# Exit status: CMD's exit status; 124 when the VM timed out; 125 when the guest gave no result
# (the console log is printed then). Needs root, qemu-system-x86 and (first run only) apt.
#
# Timing on a 2-core TCG host: ~2 s boot to prompt; the first run downloads ~90 MB of .debs.
# The -amd64 flavour is used because the -cloud flavour has no 9p.
set -euo pipefail

die() { echo "lvsd-vm: $*" >&2; exit 2; }

CACHE=${LVSD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lvsd-ipvs-vm}
OUT="" NET=0 MEM=1024 SMP=1 TMO=600 REBUILD=0 ACTION=run
ENVS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift;;
        --env) [[ "$2" == *=* ]] || die "--env wants K=V, got '$2'"; ENVS+=("$2"); shift;;
        --net) NET=1;;
        --mem) MEM=$2; shift;;
        --smp) SMP=$2; shift;;
        --timeout) TMO=$2; shift;;
        --rebuild) REBUILD=1;;
        --build) ACTION=build;;
        --print-kernel) ACTION=print;;
        --) shift; break;;
        -*) die "unknown option $1";;
        *) break;;
    esac
    shift
done
[ "$ACTION" != run ] || [ $# -gt 0 ] || die "no command given (see the header of $0)"
[ "$(id -u)" = 0 ] || die "needs root (qemu's 9p export of / and the guest's root shell)"

# --- which kernel ----------------------------------------------------------------------------
newest_kpkg() {
    apt-cache pkgnames linux-image-6.1.0- 2>/dev/null \
        | grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -1
}
pick_kernel() {
    if [ -n "${LVSD_VM_KPKG:-}" ]; then echo "$LVSD_VM_KPKG"; return; fi
    local k; k=$(newest_kpkg)
    if [ -z "$k" ]; then
        # apt lists missing (fresh container): a cached build is good enough, else update
        k=$(find "$CACHE" -maxdepth 1 -name 'linux-image-6.1.0-*-amd64' -printf '%f\n' 2>/dev/null \
            | sort -V | tail -1)
        if [ -z "$k" ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
            k=$(newest_kpkg)
        fi
    fi
    [ -n "$k" ] || die "no linux-image-6.1.0-*-amd64 package known to apt (is bookworm in sources.list?)"
    echo "$k"
}
KPKG=$(pick_kernel)
KVER=${KPKG#linux-image-}
if [ "$ACTION" = print ]; then echo "$KPKG"; exit 0; fi
KDIR=$CACHE/$KPKG

# modules the guest loads: IPVS + every scheduler this kernel has (a missing one is skipped),
# virtio transport, 9p + overlay for the root, veth/bridge/dummy for test topologies.
IPVS_MODS="ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
  ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ip_vs_twos"
BASE_MODS="crc32c_generic virtio_pci virtio_net 9pnet_virtio 9p overlay veth bridge dummy ipip
  ip6_tunnel tunnel4 tunnel6"

# --- build (cached, under a lock so parallel runs do not race) -------------------------------
build() {
    command -v qemu-system-x86_64 >/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >&2
    }
    local debs=$CACHE/debs tmp
    mkdir -p "$debs"
    tmp=$(mktemp -d "$CACHE/build.XXXXXX")
    local p
    for p in "$KPKG" busybox-static; do
        if ! ls "$debs/${p}_"*.deb >/dev/null 2>&1; then
            echo "lvsd-vm: downloading $p" >&2
            (cd "$debs" && apt-get download -q "$p" >&2) || {
                DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
                (cd "$debs" && apt-get download -q "$p" >&2)
            }
        fi
    done
    dpkg-deb -x "$(ls "$debs/${KPKG}_"*.deb | sort -V | tail -1)" "$tmp/k"
    dpkg-deb -x "$(ls "$debs/busybox-static_"*.deb | sort -V | tail -1)" "$tmp/bb"
    local BB=$tmp/bb/bin/busybox MD=$tmp/k/lib/modules/$KVER R=$tmp/root
    [ -x "$BB" ] || die "busybox-static has no bin/busybox"
    [ -f "$tmp/k/boot/vmlinuz-$KVER" ] || die "$KPKG has no boot/vmlinuz-$KVER"
    # The .deb ships no modules.dep: make one, then copy the wanted modules + dependencies.
    "$BB" depmod -b "$tmp/k" "$KVER"
    mkdir -p "$R"/{bin,proc,sys,dev,host,rw,newroot,lib/modules/$KVER}
    cp "$BB" "$R/bin/busybox"
    local a
    for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
    declare -A seen=()
    want() {  # $1 = path relative to the modules dir
        [ -n "${seen[$1]:-}" ] && return 0
        seen[$1]=1
        local d
        for d in $(awk -v m="$1:" '$1==m {for (i = 2; i <= NF; i++) print $i}' "$MD/modules.dep"); do
            want "$d"
        done
    }
    local m rel n=0
    mkdir -p "$R/etc"
    for m in $BASE_MODS $IPVS_MODS; do
        rel=$(awk -v m="/$m.ko:" 'index($1, m) && substr($1, length($1) - length(m) + 1) == m {
                  sub(":$", "", $1); print $1 }' "$MD/modules.dep")
        if [ -z "$rel" ]; then echo "lvsd-vm: $KVER has no module $m (skipped)" >&2; continue; fi
        want "$rel"
        echo "$m" >> "$R/etc/lvsd-vm-modules"  # the guest's init loads these, in this order
    done
    for rel in "${!seen[@]}"; do
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
        cp "$MD/$rel" "$R/lib/modules/$KVER/$rel"
        n=$((n + 1))
    done
    "$BB" depmod -b "$R" "$KVER"
    write_init "$KVER" > "$R/init"
    chmod 755 "$R/init"
    mkdir -p "$KDIR.new"
    (cd "$R" && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 > "$KDIR.new/initrd.gz")
    cp "$tmp/k/boot/vmlinuz-$KVER" "$KDIR.new/vmlinuz"
    # Debian sets CONFIG_PVH: qemu boots the uncompressed ELF directly, which saves the ~2 s of
    # in-guest xz decompression under TCG. Fall back to the bzImage if extraction fails.
    python3 - "$KDIR.new/vmlinuz" "$KDIR.new/vmlinux" <<'PY' || rm -f "$KDIR.new/vmlinux"
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
elf = lzma.LZMADecompressor().decompress(data[start:])
assert start > 0 and elf[:4] == b"\x7fELF", "no xz ELF payload"
open(sys.argv[2], "wb").write(elf)
PY
    echo "$KPKG $n modules" > "$KDIR.new/BUILT"
    rm -rf "$KDIR" && mv "$KDIR.new" "$KDIR"
    rm -rf "$tmp"
    echo "lvsd-vm: built $KDIR ($n modules)" >&2
}

write_init() { sed "s/@KVER@/$1/" <<'INIT'
#!/bin/sh
# lvsd-vm guest init: load IPVS, mount the host root, run the command, power off.
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "${w#*=}";; esac; done; }
OUT=$(arg lvsdvm.out)
say() { echo "LVSD-VM: $*"; }
for m in $(cat /etc/lvsd-vm-modules); do modprobe "$m" 2>/dev/null || say "no module $m"; done
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
fi
O9="trans=virtio,version=9p2000.L,msize=512000"
RC=125
if mount -t 9p -o "$O9,ro,cache=loose" host /host; then
    N=/newroot
    mount -t tmpfs -o size=50% tmpfs /rw && mkdir -p /rw/u /rw/w
    mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/u,workdir=/rw/w $N \
        || { say "overlay failed: read-only root"; N=/host; }
    mount -t proc proc $N/proc; mount -t sysfs sys $N/sys; mount -t devtmpfs dev $N/dev
    mkdir -p $N/dev/pts $N/dev/shm; mount -t devpts devpts $N/dev/pts; mount -t tmpfs shm $N/dev/shm
    mount -t tmpfs run $N/run
    mount -t 9p -o "$O9" out "$N$OUT" || say "out share not mounted at $OUT"
    mount -t bpf bpf $N/sys/fs/bpf 2>/dev/null || true
    say "ready at $(cut -d' ' -f1 /proc/uptime)s"
    chroot $N /bin/bash "$OUT/.lvsd-vm/guest.sh"
    RC=$?
    sync
else
    say "9p mount of the host root failed"
fi
echo "LVSD-VM-RC=$RC"
poweroff -f
INIT
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ "$REBUILD" = 1 ] || [ ! -s "$KDIR/BUILT" ]; then build; fi
flock -u 9
[ "$ACTION" = build ] && { cat "$KDIR/BUILT"; exit 0; }

# --- run -----------------------------------------------------------------------------------
CLEAN_OUT=0
if [ -z "$OUT" ]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/lvsd-vm-out.XXXXXX"); CLEAN_OUT=1; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
case "$OUT$PWD" in *[[:space:]]*) die "paths with spaces are not supported ($OUT, $PWD)";; esac
CTL=$OUT/.lvsd-vm
rm -rf "$CTL"; mkdir -p "$CTL"
{
    echo "#!/bin/bash"
    echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "export HOME=/root LANG=C.UTF-8 TERM=dumb LVSD_VM=1 LVSD_VM_OUT=$(printf %q "$OUT")"
    [ -n "${CI:-}" ] && echo "export CI=$(printf %q "$CI")"
    for kv in "${ENVS[@]}"; do echo "export $(printf %q "${kv%%=*}")=$(printf %q "${kv#*=}")"; done
    echo "cd $(printf %q "$PWD") || exit 126"
    printf '%q ' "$@"; echo '> "$LVSD_VM_OUT/.lvsd-vm/output" 2>&1'
    echo 'echo $? > "$LVSD_VM_OUT/.lvsd-vm/rc"'
} > "$CTL/guest.sh"

KIMG=$KDIR/vmlinux; [ -s "$KIMG" ] || KIMG=$KDIR/vmlinuz
read -r -a EXTRA <<< "${QEMU_EXTRA:-}"
ACCEL=(-accel tcg)
for x in "${EXTRA[@]}"; do [ "$x" = -accel ] && ACCEL=(); done
NIC=(-nic none); [ "$NET" = 1 ] && NIC=(-nic user,model=virtio-net-pci)
LOG=$CTL/console.log
set +e
timeout --kill-after=5 "$TMO" qemu-system-x86_64 "${ACCEL[@]}" "${EXTRA[@]}" -m "$MEM" -smp "$SMP" \
    -nographic -no-reboot -bios /usr/share/qemu/qboot.rom "${NIC[@]}" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$OUT,mount_tag=out,security_model=none,multidevs=remap" \
    -kernel "$KIMG" -initrd "$KDIR/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 lvsdvm.out=$OUT" </dev/null > "$LOG" 2>&1
QRC=$?
set -e
[ -f "$CTL/output" ] && cat "$CTL/output"
RC=$(cat "$CTL/rc" 2>/dev/null || true)
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
    echo "lvsd-vm: VM timed out after ${TMO}s; console:" >&2; tr -d '\r' < "$LOG" | tail -40 >&2
    RC=124
elif [ -z "$RC" ]; then
    echo "lvsd-vm: guest gave no result (qemu exit $QRC); console:" >&2; tr -d '\r' < "$LOG" | tail -40 >&2
    RC=125
fi
[ "$CLEAN_OUT" = 1 ] && rm -rf "$OUT"
exit "$RC"
