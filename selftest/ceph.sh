#!/bin/bash
# selftest/ceph.sh up|down|status - a real single-node CephFS for the tests and the demo:
# 1 mon, 1 mgr, 1 bluestore OSD on a sparse file, 1 mds, all on 127.0.0.1, all state under
# $CEPH_RS_STATE/ceph (default /var/tmp/ceph_rs/ceph), no systemd; daemons run in the
# foreground under setsid and are stopped by their pid files, never by name.
# Client client.samba may use the whole filesystem `cephfs`.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STATE=${CEPH_RS_STATE:-/var/tmp/ceph_rs}
D=$STATE/ceph
V2=${MON_V2_PORT:-13300}
V1=${MON_V1_PORT:-16789}
OSD_SIZE=$(( ${OSD_SIZE_GB:-64} * 1024 * 1024 * 1024 ))
FS=${FS_NAME:-cephfs}
CLIENT=${CLIENT_ID:-samba}
C="ceph -c $D/ceph.conf --connect-timeout 15"

say() { echo "ceph: $*"; }
die() { echo "ceph: ERROR: $*" >&2; exit 1; }
alive() { local st; st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ]; }
ours() {   # pid runs a ceph daemon binary started with -c $D/ceph.conf
  case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
    /usr/bin/ceph-mon|/usr/bin/ceph-mgr|/usr/bin/ceph-osd|/usr/bin/ceph-mds) ;; *) return 1;; esac
  tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "-c $D/ceph.conf "
}
daemon_pid() { local pf="$D/run/$1.pid"; [ -f "$pf" ] || return 1; local p; p=$(cat "$pf"); ours "$p" && alive "$p" && echo "$p"; }
# wait for a condition; if the daemon behind it died, name its log file
waitfor() {  # waitfor DESC DAEMON CMD...
  local what=$1 d=$2 i; shift 2
  for i in $(seq 240); do
    "$@" >/dev/null 2>&1 && return 0
    if [ -n "$d" ] && [ -f "$D/run/$d.started" ] && ! kill -0 "$(cat "$D/run/$d.started")" 2>/dev/null; then
      die "ceph-$d failed to start; see $D/log/$d.log and $D/log/$d.out"
    fi
    sleep 0.5
  done
  die "timeout waiting for $what; see $D/log/${d:-ceph}.log"
}
run_daemon() {  # run_daemon NAME CMD...: foreground daemon in its own session
  local n=$1; shift
  setsid "$@" -f </dev/null >>"$D/log/$n.out" 2>&1 &
  echo $! > "$D/run/$n.started"
}

healthy() { [ -f "$D/ceph.conf" ] && $C mds stat 2>/dev/null | grep -q up:active; }

up() {
  if [ -d "$D" ]; then
    if healthy; then say "already up ($D)"; return 0; fi
    say "stale state in $D: removing it and booting afresh"; down
  fi
  mkdir -p "$D"/{run,log,crash,mon/ceph-a,mgr/ceph-x,osd/ceph-0,mds/ceph-a}
  local FSID OSD_UUID; FSID=$(uuidgen); OSD_UUID=$(uuidgen)
  local dsec="log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok"
  cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $D/run
crash dir = $D/crash
log to stderr = false
mon cluster log file = $D/log/ceph.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1

[client]
keyring = $D/ceph.\$name.keyring
log file = $D/log/\$name.\$pid.log
admin socket =

[mon]
mon data = $D/mon/\$cluster-\$id
keyring = $D/mon/\$cluster-\$id/keyring
$dsec

[mgr]
mgr data = $D/mgr/\$cluster-\$id
keyring = $D/mgr/\$cluster-\$id/keyring
$dsec

[osd]
osd data = $D/osd/\$cluster-\$id
keyring = $D/osd/\$cluster-\$id/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $OSD_SIZE
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
$dsec

[mds]
mds data = $D/mds/\$cluster-\$id
keyring = $D/mds/\$cluster-\$id/keyring
mds cache memory limit = 134217728
$dsec
CONF
  chmod 644 "$D/ceph.conf"
  export CEPH_CONF="$D/ceph.conf"
  A() { ceph-authtool "$@" >/dev/null; }
  A "$D/mkfs.keyring" --create-keyring --gen-key -n mon. --cap mon 'allow *'
  A "$D/ceph.client.admin.keyring" --create-keyring --gen-key -n client.admin \
     --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
  A "$D/mgr/ceph-x/keyring" --create-keyring --gen-key -n mgr.x \
     --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
  A "$D/osd/ceph-0/keyring" --create-keyring --gen-key -n osd.0 \
     --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
  A "$D/mds/ceph-a/keyring" --create-keyring --gen-key -n mds.a \
     --cap mon 'allow profile mds' --cap mgr 'allow profile mds' --cap osd 'allow *' --cap mds 'allow'
  local k
  for k in ceph.client.admin.keyring mgr/ceph-x/keyring osd/ceph-0/keyring mds/ceph-a/keyring; do
    A "$D/mkfs.keyring" --import-keyring "$D/$k"
  done
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]" \
     --enable-all-features --set-min-mon-release pacific "$D/monmap" >/dev/null
  ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mkfs.keyring" \
     >"$D/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed; see $D/log/mon-mkfs.out"
  rm -f "$D/mkfs.keyring" "$D/monmap"
  run_daemon mon.a ceph-mon -c "$D/ceph.conf" -i a
  waitfor "mon" mon.a $C mon stat
  say "mon up"
  run_daemon mgr.x ceph-mgr -c "$D/ceph.conf" -i x
  $C osd new "$OSD_UUID" 0 >/dev/null
  ceph-osd -c "$D/ceph.conf" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd-mkfs.out" 2>&1 \
     || die "ceph-osd --mkfs failed; see $D/log/osd-mkfs.out"
  run_daemon osd.0 ceph-osd -c "$D/ceph.conf" -i 0
  waitfor "osd.0 up" osd.0 bash -c "$C osd dump | grep -q '^osd.0 up'"
  say "osd.0 up"
  run_daemon mds.a ceph-mds -c "$D/ceph.conf" -i a
  $C osd pool create cephfs_metadata 8 8 >/dev/null
  $C osd pool create cephfs_data 8 8 >/dev/null
  $C fs new "$FS" cephfs_metadata cephfs_data >/dev/null
  $C fs set "$FS" standby_count_wanted 0
  $C fs authorize "$FS" "client.$CLIENT" / rw > "$D/ceph.client.$CLIENT.keyring"
  chmod 600 "$D/ceph.client.$CLIENT.keyring"
  waitfor "mds active" mds.a bash -c "$C mds stat | grep -q up:active"
  say "mds active: $($C mds stat)"
  say "conf $D/ceph.conf, client.$CLIENT, fs $FS"
}

stop_pid() {   # stop NAME PID: SIGTERM, wait up to 10 s, then SIGKILL
  kill -TERM "$2" 2>/dev/null || true
  local i; for i in $(seq 1 50); do alive "$2" || break; sleep 0.2; done
  if alive "$2"; then
    # ceph-mds 16.2.15 can deadlock on SIGTERM right after unlinks: SIGKILL is safe
    say "$1 (pid $2) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$2" 2>/dev/null || true; sleep 0.2
  fi
}

down() {
  [ -d "$D" ] || { say "not running"; return 0; }
  local n p
  for n in mds.a mgr.x osd.0 mon.a; do
    p=$(daemon_pid "$n") && stop_pid "$n" "$p"
  done
  for p in /proc/[0-9]*; do p=${p#/proc/}; ours "$p" && alive "$p" && stop_pid leftover "$p"; done
  rm -rf "$D"
  say "down"
}

status() {
  if healthy; then echo "ceph: up: $($C mds stat)"; else echo "ceph: down"; return 1; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart-mds) p=$(daemon_pid mds.a) && stop_pid mds.a "$p"; run_daemon mds.a ceph-mds -c "$D/ceph.conf" -i a
               waitfor "mds active" mds.a bash -c "$C mds stat | grep -q up:active"; say "mds restarted" ;;
  *) echo "usage: $0 up|down|status|restart-mds" >&2; exit 2 ;;
esac
