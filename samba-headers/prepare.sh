#!/bin/bash
# samba-headers/prepare.sh - prepare the headers a VFS module compiles against, for the
# *installed* smbd, from Debian's source package of exactly that samba version.
#
# samba-dev does not ship vfs.h, includes.h, the configured config.h nor the generated
# librpc/gen_ndr and param headers. This script downloads the upstream tarball of the
# installed samba version (apt-get source, sha256 checked against the Sources index),
# runs a minimal waf configure, runs the generators (pidl, gen_ntstatus.py, ...) directly
# until `gcc -M -MG` finds nothing missing, and copies the headers used into a small,
# relocatable tree:
#     $CACHE/<samba package version>/sdk/{include/,cflags,abi.txt}
# CACHE defaults to /var/cache/ceph_rs/samba-sdk. A prepared version is reused at no cost.
# Before it declares success it checks the ABI against the installed smbd: the VFS
# interface version and the layout-relevant defines against `smbd -b`.
#
# usage: samba-headers/prepare.sh [--force] [--print-sdk]
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${CEPH_RS_SDK_CACHE:-/var/cache/ceph_rs/samba-sdk}
# The VFS interface of Samba 4.22 (source3/include/vfs.h). The module is written for it.
EXPECT_VFS_IFACE=50
FORCE=0; PRINT=0
for a in "$@"; do case "$a" in --force) FORCE=1;; --print-sdk) PRINT=1;; *) echo "usage: $0 [--force] [--print-sdk]" >&2; exit 2;; esac; done

die() { echo "samba-headers: ERROR: $*" >&2; exit 1; }
trap 'echo "samba-headers: ERROR: failed at line $LINENO (command: $BASH_COMMAND)" >&2' ERR
t0=$(date +%s.%N)
say() { awk -v a="$t0" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN{printf "samba-headers: [%5.1fs] %s\n", b-a, m}'; }

command -v smbd >/dev/null || die "smbd is not installed: run selftest/install.sh (samba 4.22.6 from bookworm-backports)"
PKG_VER=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) || die "package samba is not installed"
UP_VER=$(echo "$PKG_VER" | sed -e 's/^[0-9]*://' -e 's/+dfsg.*//' -e 's/-.*//')
case "$PKG_VER" in *bpo12*) ;; *) die "installed samba is $PKG_VER, not from bookworm-backports; ceph_rs needs 4.22.x from bookworm-backports: apt-get install -t bookworm-backports samba";; esac
OUT="$CACHE/${PKG_VER//:/_}"
SDK="$OUT/sdk"
if [ $PRINT = 1 ]; then echo "$SDK"; exit 0; fi
if [ $FORCE = 0 ] && [ -f "$SDK/abi.txt" ] && grep -qx "status: ok" "$SDK/abi.txt"; then
  say "headers for samba $PKG_VER already prepared: $SDK"; exit 0
fi

# -------------------------------------------------------------- tools
need=()
for p in dpkg-dev gcc make pkg-config perl libparse-yapp-perl flex bison libgnutls28-dev \
         zlib1g-dev libbsd-dev libacl1-dev libattr1-dev xz-utils; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
[ ${#need[@]} -eq 0 ] || die "missing build tools: ${need[*]} (run selftest/install.sh)"
grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
  || die "no deb-src apt source: run selftest/install.sh"

# -------------------------------------------------------------- source
WORK="$OUT/work"; mkdir -p "$WORK"; cd "$WORK"
ORIG="samba_${UP_VER}+dfsg.orig.tar.xz"
if [ ! -f "$ORIG" ]; then
  # The backport's .dsc/.debian.tar.xz may be missing on the mirror; the orig tarball is
  # what we need, and it is verified below against the Sources index.
  apt-get source --download-only "samba=$PKG_VER" >"$WORK/apt-source.log" 2>&1 || true
fi
[ -f "$ORIG" ] || die "could not download $ORIG with 'apt-get source samba=$PKG_VER' (see $WORK/apt-source.log)"
want=$( (apt-cache showsrc samba || true) | awk -v v="$PKG_VER" -v f="$ORIG" '/^Package:/{ok=0} /^Version:/{ok=($2==v)} /^Checksums-Sha256:/{s=1;next} /^[^ ]/{s=0} ok && s && $3==f {print $1}' | head -1)
have=$(sha256sum "$ORIG" | cut -d' ' -f1)
[ -n "$want" ] || die "no sha256 for $ORIG in the apt Sources index (apt-get update?)"
[ "$want" = "$have" ] || die "sha256 mismatch on $ORIG"
say "source $ORIG verified"

S="$WORK/samba-$UP_VER"
B="$S/bin/default"
if [ -f "$B/include/config.h.orig" ] && [ -f "$WORK/configured.ok" ]; then
  say "reusing configured tree"
else
  rm -rf "$S"; tar xf "$ORIG"; say "source extracted"
  cd "$S"
  # Minimal features; nothing here changes struct layouts in the VFS headers (checked below).
  PYTHON=$PY ./configure \
    --prefix=/usr --enable-fhs --sysconfdir=/etc --localstatedir=/var \
    --libdir=/usr/lib/x86_64-linux-gnu --with-modulesdir=/usr/lib/x86_64-linux-gnu/samba \
    --with-privatedir=/var/lib/samba/private --with-smbpasswd-file=/etc/samba/smbpasswd \
    --with-piddir=/run/samba --with-lockdir=/run/samba --with-statedir=/var/lib/samba \
    --with-cachedir=/var/cache/samba --with-sockets-dir=/run/samba \
    --with-cluster-support --with-profiling-data --with-quotas --with-utmp --with-syslog \
    --with-automount --with-socketpath=/run/ctdb/ctdbd.socket \
    --without-ad-dc --disable-python --without-ldb-lmdb --without-ads --without-ldap \
    --without-json --without-pam --without-acl-support --without-libarchive \
    --disable-cups --disable-iprint --disable-avahi --without-systemd --without-lttng \
    --disable-glusterfs --disable-cephfs --disable-spotlight --without-gettext \
    --without-winbind --without-regedit --without-gpgme \
    '--with-shared-modules=!vfs_snapper' \
    > "$WORK/configure.log" 2>&1 || { tail -30 "$WORK/configure.log"; die "waf configure failed (log: $WORK/configure.log)"; }
  cp "$B/include/config.h" "$B/include/config.h.orig"
  touch "$WORK/configured.ok"
  say "configured"
fi
cd "$WORK"

# -------------------------------------------------------------- reconcile config.h with smbd -b
smbd -b | awk 'NF==1 && $1 ~ /^[A-Za-z_][A-Za-z0-9_]*$/ {print $1}' | sort -u > "$WORK/smbd-b.defs"
CFG="$B/include/config.h"
cp "$CFG.orig" "$CFG"
for m in HAVE_VALGRIND_MEMCHECK_H HAVE_VALGRIND_H HAVE_VALGRIND_VALGRIND_H HAVE_VALGRIND_CALLGRIND_H HAVE_VALGRIND_HELGRIND_H HAVE_VALGRIND_DRD_H; do
  if grep -q "^#define $m " "$CFG" && ! grep -qx "$m" "$WORK/smbd-b.defs"; then
    sed -i "s|^#define $m .*|/* #undef $m (not in smbd -b) */|" "$CFG"
  fi
done

# -------------------------------------------------------------- generated headers
CFLAGS_SAMBA="-D_SAMBA_BUILD_=4 -DHAVE_CONFIG_H=1 -D_GNU_SOURCE=1 -D_XOPEN_SOURCE_EXTENDED=1 -D__STDC_WANT_LIB_EXT1__=1 -D_REENTRANT"
INCDIRS="source3 source3/include source3/lib
 third_party/heimdal/lib/com_err third_party/heimdal/lib/base third_party/heimdal/lib/krb5
 third_party/heimdal/lib/gssapi/gssapi third_party/heimdal_build/include third_party/heimdal/lib/asn1
 lib/tdb/include lib/tevent lib/talloc third_party/popt
 include/public source4 lib source4/lib source4/include include lib/replace ."
INC=""
for d in $INCDIRS; do mkdir -p "$B/$d"; INC="$INC -I$B/$d -I$S/$d"; done
TU="$WORK/wrapper.c"
cp "$HERE/wrapper.h" "$WORK/wrapper.h"
printf '#include "wrapper.h"\n' > "$TU"

gen_param() {   # $1 = mode, $2 = output, [$3 = scope]
  local xml="$B/docs-xml/smbdotconf/parameters.all.xml"
  if [ ! -f "$xml" ]; then
    mkdir -p "$(dirname "$xml")"
    $PY - "$S/docs-xml" "$xml" <<'PYEOF'
import os, sys, glob, re
src, out = sys.argv[1], sys.argv[2]
files = sorted([f for f in glob.glob(os.path.join(src, 'smbdotconf', '**', '*.xml'), recursive=True)
                if not f.endswith('parameters.all.xml')], key=lambda m: os.path.basename(m))
body = "".join(open(f).read() for f in files)
ents = set(re.findall(r'&(pathconfig\.[A-Za-z0-9_]+);', body))
hdr = "".join("<!ENTITY %s '%s'>\n" % (e, "/" + e) for e in sorted(ents))
open(out, 'w').write("<!DOCTYPE section [\n" + hdr + "]>\n<section>\n" + body + "</section>\n")
PYEOF
  fi
  mkdir -p "$(dirname "$2")"
  $PY "$S/script/generate_param.py" --file "$xml" --output "$2" --mode="$1" ${3:+--scope=$3}
}
gen_one() {    # $1 = include name as spelled in the #include
  local h="$1" base idl="" dir out n
  base=$(basename "$h")
  case "$h" in
    *gen_ndr/*)
      n="${base%.h}"; n="${n#ndr_}"; n="${n%_c}"; n="${n%_s}"; n="${n%_scompat}"
      for dir in librpc/idl source3/librpc/idl source4/librpc/idl; do
        if [ -f "$S/$dir/$n.idl" ]; then idl="$dir/$n.idl"; break; fi
      done
      [ -n "$idl" ] || die "no IDL for $h"
      out="$(dirname "$(dirname "$idl")")/gen_ndr"; mkdir -p "$B/$out"
      (cd "$B" && PERL_HASH_SEED=0 CC=gcc perl "$S/pidl/pidl" --quiet --header --ndr-parser --client \
           --includedir="$S/librpc/idl" --includedir="$B/include" --outputdir "$out" -- "$S/$idl" 2>>"$WORK/pidl.log")
      ;;
    *ntstatus_gen.h) mkdir -p "$B/libcli/util"; (cd "$B/libcli/util" && $PY "$S/source4/scripting/bin/gen_ntstatus.py" "$S/libcli/util/ntstatus_err_table.txt" ntstatus_gen.h nterr_gen.c py_ntstatus.c ntstatus_gen.rs) ;;
    *werror_gen.h)   mkdir -p "$B/libcli/util"; (cd "$B/libcli/util" && $PY "$S/source4/scripting/bin/gen_werror.py" "$S/libcli/util/werror_err_table.txt" werror_gen.h werror_gen.c werror_friendly_gen.c py_werror.c) ;;
    *hresult.h)      mkdir -p "$B/libcli/util"; (cd "$B/libcli/util" && $PY "$S/source4/scripting/bin/gen_hresult.py" "$S/libcli/util/hresult_err_table.txt" hresult.h hresult.c py_hresult.c) ;;
    *param/param_local.h)     gen_param PARAMDEFS "$B/lib/param/param_local.h" LOCAL ;;
    *param/param_global.h)    gen_param PARAMDEFS "$B/lib/param/param_global.h" GLOBAL ;;
    *param/param_functions.h) gen_param LIBPROTO  "$B/lib/param/param_functions.h" ;;
    *source3/param/param_proto.h) gen_param S3PROTO "$B/source3/param/param_proto.h" ;;
    *) die "don't know how to generate $h" ;;
  esac
}
deps() {  # include deps of the TU, one per line (-MG: missing ones as spelled)
  (cd "$WORK" && gcc -x c -M -MG $CFLAGS_SAMBA $INC -I"$WORK" "$TU" 2>/dev/null) \
    | tr ' \\' '\n\n' | grep -v -e '^$' -e ':$' | sort -u
}
prev=""
for round in $(seq 1 30); do
  missing=$(deps | grep -v '^/' | grep -vx 'wrapper.h') || true
  [ -n "$missing" ] || break
  [ "$missing" != "$prev" ] || die "no progress generating: $missing"
  prev="$missing"
  say "round $round: generating $(echo $missing | wc -w) headers"
  for h in $missing; do gen_one "$h"; done
done
(cd "$WORK" && gcc -x c -fsyntax-only -Wall $CFLAGS_SAMBA $INC -I"$WORK" "$TU") \
  || die "the prepared headers do not compile the module's wrapper.h"
say "generated headers complete"

# -------------------------------------------------------------- sdk tree
NEW="$SDK.new"; rm -rf "$NEW"; mkdir -p "$NEW/include"
deps | grep -e "^$S/" | while read -r f; do
  r=$(realpath -m --relative-to="$S" "$f")
  case "$r" in bin/default/*) r="${r#bin/default/}";; esac
  mkdir -p "$NEW/include/$(dirname "$r")"; cp "$f" "$NEW/include/$r"
done
SINC=""; for d in $INCDIRS; do [ -d "$NEW/include/$d" ] && SINC="$SINC -I\$SDK/include/$d"; done
echo "$CFLAGS_SAMBA$SINC" > "$NEW/cflags"

# -------------------------------------------------------------- ABI check against the installed smbd
iface=$(awk '/#define SMB_VFS_INTERFACE_VERSION/{print $3}' "$NEW/include/source3/include/vfs.h")
[ "$iface" = "$EXPECT_VFS_IFACE" ] || die "vfs.h of samba $PKG_VER has SMB_VFS_INTERFACE_VERSION $iface; ceph_rs is written for $EXPECT_VFS_IFACE (Samba 4.22)"
grep -E '^#define ' "$CFG" | awk '{print $2}' | sed 's/(.*//' | sort -u > "$WORK/ours.defs"
bad=""
# Defines that change the layout of structs the module reads (files_struct, connection_struct, ...)
for m in HAVE_IMMEDIATE_STRUCTURES WITH_SMB1SERVER HAVE_ROBUST_MUTEXES HAVE_IPV6 WITH_PROFILE SIZEOF_DEV_T SIZEOF_INO_T SIZEOF_OFF_T HAVE_LINUX_IOCTL HAVE_KERNEL_OPLOCKS_LINUX; do
  a=no; b=no
  grep -qx "$m" "$WORK/smbd-b.defs" && a=yes
  grep -qx "$m" "$WORK/ours.defs" && b=yes
  [ $a = $b ] || bad="$bad $m(smbd:$a,headers:$b)"
done
[ -z "$bad" ] || die "configured headers differ from the installed smbd in layout-relevant defines:$bad. Delete $OUT and re-run; if it persists the samba package was built differently"
smbd_ver=$(smbd --version | sed -n 's/^Version //p')
{
  echo "package: $PKG_VER"
  echo "smbd: $smbd_ver"
  echo "vfs_interface: $iface"
  echo "status: ok"
} > "$NEW/abi.txt"
rm -rf "$SDK"; mv "$NEW" "$SDK"
say "sdk ready: $SDK ($(find "$SDK/include" -type f | wc -l) headers); vfs interface $iface matches; layout defines match smbd -b"
# the unpacked source is only needed to re-prepare; keep the tarball (the apt cache of this step)
rm -rf "$S" "$WORK/configured.ok"
