#!/bin/bash
# selftest/install.sh - install every system package ceph_rs builds and tests against.
# Idempotent: a second run with everything present only checks versions (about 1 s).
#   Samba 4.22.6 from Debian bookworm-backports (VFS interface 50)
#   Ceph 16.2.15 (pacific) from Debian bookworm
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
SAMBA_WANT=${SAMBA_WANT:-4.22.6}
CEPH_WANT=${CEPH_WANT:-16.2.15}

say() { echo "install: $*"; }
die() { echo "install: ERROR: $*" >&2; exit 1; }

BPO=/etc/apt/sources.list.d/ceph_rs-bookworm-backports.sources
if [ ! -f "$BPO" ]; then
  say "adding apt source bookworm-backports (deb + deb-src) and deb-src for bookworm"
  cat > "$BPO" <<SRC
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  rm -f /var/lib/ceph_rs-apt-updated
fi

# packages from bookworm-backports (pinned with -t) and from bookworm
SAMBA_PKGS=(samba samba-vfs-ceph samba-testsuite smbclient)
BASE_PKGS=(ceph-mon ceph-mgr ceph-osd ceph-mds ceph-common libcephfs-dev libcephfs2 python3-cephfs
  clang libclang-dev uuid-runtime iproute2 procps python3-venv
  dpkg-dev gcc make pkg-config perl libparse-yapp-perl flex bison libgnutls28-dev zlib1g-dev
  libbsd-dev libacl1-dev libattr1-dev xz-utils)

missing() { local p; for p in "$@"; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done; }
need_base=$(missing "${BASE_PKGS[@]}")
need_samba=$(missing "${SAMBA_PKGS[@]}")

apt_retry() { local i; for i in 1 2 3 4 5; do "$@" && return 0; say "retry in 10 s: $*"; sleep 10; done; return 1; }

if [ -n "$need_base$need_samba" ] || [ ! -f /var/lib/ceph_rs-apt-updated ]; then
  if [ -n "$need_base$need_samba" ]; then
    apt_retry apt-get update -qq
    touch /var/lib/ceph_rs-apt-updated
  fi
fi
if [ -n "$need_base" ]; then
  say "apt-get install $(echo $need_base)"
  apt_retry apt-get install -y -q --no-install-recommends $need_base
fi
if [ -n "$need_samba" ]; then
  say "apt-get install -t bookworm-backports $(echo $need_samba)"
  apt_retry apt-get install -y -q --no-install-recommends -t bookworm-backports $need_samba
fi

# ---- version checks: a wrong version is a clear error, not a confusing build failure
sv=$(dpkg-query -W -f='${Version}' samba 2>/dev/null || true)
case "$sv" in
  *:"$SAMBA_WANT"+*bpo12*) ;;
  *) die "samba package version is '$sv'; ceph_rs needs $SAMBA_WANT from bookworm-backports.
  Fix: apt-get install -t bookworm-backports samba samba-vfs-ceph samba-testsuite smbclient" ;;
esac
for p in samba-vfs-ceph samba-testsuite smbclient; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
  [ "$v" = "$sv" ] || die "$p is '$v' but samba is '$sv': install both from bookworm-backports"
done
cv=$(dpkg-query -W -f='${Version}' libcephfs2 2>/dev/null || true)
case "$cv" in
  "$CEPH_WANT"[-+]*) ;;
  *) die "libcephfs2 is '$cv'; ceph_rs is built and tested against Ceph $CEPH_WANT (Debian bookworm)" ;;
esac
say "ok: samba $sv, ceph $cv"
