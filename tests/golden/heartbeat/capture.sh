#!/bin/sh
# Captures what Linux-HA Heartbeat 3.0.6 (Debian's `heartbeat`) prints for cl_status, hb_standby
# and hb_takeover, and the environment it gives resource scripts, on a two-node lab: network
# namespaces joined by a veth pair, each node in its own UTS + mount + IPC namespace (hostname =
# node name; private /etc/ha.d, /var/lib/heartbeat, /var/log, tmpfs /run), as the benchmarks run
# Heartbeat (xtask/src/bench/cluster.rs). Run as root: sh capture.sh OUTDIR
# Each capture is OUTDIR/NAME.out (stdout), NAME.err (stderr, timestamps and pids masked) and
# NAME.rc (exit code). hbctl's personalities are tested against these files
# (tests/tests/heartbeat_tools.rs).
set -eu
OUT=${1:?usage: capture.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
P=rmhb$$
WORK=$(mktemp -d)
HOLDERS=""
cleanup() {
  for h in $HOLDERS; do
    nsenter -t "$h" -n -u -m -i -- /usr/libexec/heartbeat/heartbeat -k >/dev/null 2>&1 || true
  done
  for n in n1 n2; do
    for p in $(ip netns pids $P-$n 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $P-$n 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add $P-n1
ip netns add $P-n2
ip link add $P-a type veth peer name $P-b
ip link set $P-a netns $P-n1
ip link set $P-b netns $P-n2
ip -n $P-n1 link set $P-a name eth1
ip -n $P-n2 link set $P-b name eth1
for n in 1 2; do
  ip -n $P-n$n link set lo up
  ip -n $P-n$n addr add 10.99.16.$n/24 dev eth1
  ip -n $P-n$n link set eth1 up
done

setup() { # node peer-address
  d=$WORK/$1
  mkdir -p $d/log
  cp -a /etc/ha.d $d/ha.d
  cp -a /var/lib/heartbeat $d/varlib
  cat > $d/ha.d/ha.cf <<CF
logfile /var/log/ha-log
use_logd no
keepalive 200ms
deadtime 2000ms
warntime 1000ms
initdead 4000ms
udpport 694
ucast eth1 $2
auto_failback on
node n1
node n2
crm no
CF
  cat > $d/ha.d/haresources <<RES
n1 IPaddr::10.99.16.100/24/eth1:0 envdump
n2 IPaddr2::10.99.16.101/24/eth1:7
RES
  printf 'auth 1\n1 sha1 capture-secret\n' > $d/ha.d/authkeys
  chmod 600 $d/ha.d/authkeys
  cat > $d/ha.d/resource.d/envdump <<'SCRIPT'
#!/bin/sh
# Records the environment Heartbeat gives a resource script, and says running once started.
case "$1" in
  start) env | LC_ALL=C sort > /var/log/envdump.env; touch /run/envdump.on ;;
  stop) rm -f /run/envdump.on ;;
  status) if [ -e /run/envdump.on ]; then echo "envdump is running"; else echo "envdump is stopped"; fi ;;
esac
exit 0
SCRIPT
  chmod 755 $d/ha.d/resource.d/envdump
  fifo=$d/ready
  mkfifo $fifo
  ip netns exec $P-$1 unshare --uts --mount --ipc --propagation private -- sh -c "
    set -e
    hostname $1
    mount --bind $d/ha.d /etc/ha.d
    mount --bind $d/varlib /var/lib/heartbeat
    mount --bind $d/log /var/log
    mount -t tmpfs tmpfs /run
    mkdir -p /run/heartbeat/ccm /run/heartbeat/crm /run/heartbeat/dopd /run/crm /run/lock /run/resource-agents
    chown -R hacluster:haclient /run/heartbeat /run/crm
    chmod 750 /run/heartbeat /run/crm
    echo \$\$ > $fifo
    exec sleep 100000" </dev/null >/dev/null 2>&1 &
  read pid < $fifo
  HOLDERS="$HOLDERS $pid"
  eval "H_$1=$pid"
}
setup n1 10.99.16.2
setup n2 10.99.16.1

on() { # node command...
  n=$1; shift
  eval "h=\$H_$n"
  nsenter -t "$h" -n -u -m -i -- "$@"
}
# cap NAME NODE COMMAND...: run COMMAND on NODE, record its output and exit code.
cap() {
  name=$1; n=$2; shift 2
  set +e
  on $n "$@" > "$OUT/$name.out" 2> "$OUT/$name.err.raw"
  echo $? > "$OUT/$name.rc"
  set -e
  # cl_log's stderr lines carry a date and a pid: mask both.
  sed -E -e 's/^[A-Z][a-z]{2} [0-9 ][0-9] [0-9:]{8} /DATE /' -e 's/\[[0-9]+\]/[PID]/g' \
    "$OUT/$name.err.raw" > "$OUT/$name.err"
  rm -f "$OUT/$name.err.raw"
}
wait_for() { # node pattern-in-ha-log
  i=0
  while ! grep -q "$2" $WORK/$1/log/ha-log 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "timeout waiting for '$2' on $1" >&2; exit 1; }
    sleep 0.1
  done
}

cap stopped.hbstatus n1 cl_status hbstatus
cap stopped.nodestatus n1 cl_status nodestatus n1
cap stopped.rscstatus n1 cl_status rscstatus

on n1 /usr/libexec/heartbeat/heartbeat
on n2 /usr/libexec/heartbeat/heartbeat
wait_for n1 'Initial resource acquisition complete'
wait_for n2 'Initial resource acquisition complete'
# auto_failback: both groups settle on their preferred nodes.
wait_for n1 'remote resource transition completed'
sleep 3
# Only what Heartbeat adds (HA_*, OCF_*), not the environment this script ran in.
grep -E '^(HA|OCF)_' $WORK/n1/log/envdump.env > "$OUT/envdump.env"
on n1 ip -4 addr show dev eth1 | awk '$1 == "inet" {print $2, $NF}' > "$OUT/n1.addresses"
on n2 ip -4 addr show dev eth1 | awk '$1 == "inet" {print $2, $NF}' > "$OUT/n2.addresses"

cap usage n1 cl_status
cap usage-h n1 cl_status -h
cap bogus n1 cl_status bogus
cap hbstatus n1 cl_status hbstatus
cap hbstatus-m n1 cl_status hbstatus -m
cap listnodes n1 cl_status listnodes
cap listnodes-n n1 cl_status listnodes -n
cap listnodes-p n1 cl_status listnodes -p
cap listnodes-m n1 cl_status listnodes -m
cap listnodes-x n1 cl_status listnodes -x
cap nodetype n1 cl_status nodetype n2
cap nodetype-m n1 cl_status nodetype -m n2
cap nodetype-nosuch n1 cl_status nodetype nosuch
cap nodetype-noarg n1 cl_status nodetype
cap nodestatus-self n1 cl_status nodestatus n1
cap nodestatus-peer n1 cl_status nodestatus n2
cap nodestatus-m n1 cl_status nodestatus -m n2
cap nodestatus-after n1 cl_status nodestatus n2 -m
cap nodestatus-nosuch n1 cl_status nodestatus nosuch
cap nodestatus-noarg n1 cl_status nodestatus
cap nodestatus-x n1 cl_status nodestatus -x n2
cap listhblinks-self n1 cl_status listhblinks n1
cap listhblinks-peer n1 cl_status listhblinks n2
cap listhblinks-m n1 cl_status listhblinks -m n2
cap listhblinks-nosuch n1 cl_status listhblinks nosuch
cap hblinkstatus n1 cl_status hblinkstatus n2 eth1
cap hblinkstatus-m n1 cl_status hblinkstatus -m n2 eth1
cap hblinkstatus-self n1 cl_status hblinkstatus n1 eth1
cap hblinkstatus-nosuchlink n1 cl_status hblinkstatus n2 eth9
cap hblinkstatus-noarg n1 cl_status hblinkstatus n2
cap clientstatus n1 cl_status clientstatus n2 ipfail
cap clientstatus-self n1 cl_status clientstatus n1 ipfail 200
cap clientstatus-noarg n1 cl_status clientstatus n2
cap listnodes-n2 n2 cl_status listnodes
cap listnodes-v n1 cl_status listnodes -v
cap hbstatus-v n1 cl_status hbstatus -v
cap listhblinks-v n1 cl_status listhblinks -v n2
cap nodeweight n1 cl_status nodeweight n2
cap nodeweight-m n1 cl_status nodeweight -m n2
cap nodesite n1 cl_status nodesite n2
cap nodesite-m n1 cl_status nodesite -m n2
cap rscstatus n1 cl_status rscstatus
cap rscstatus-m n1 cl_status rscstatus -m
cap rscstatus-n2 n2 cl_status rscstatus
cap hbparameter-keepalive n1 cl_status hbparameter -p keepalive
cap hbparameter-m n1 cl_status hbparameter -m -p deadtime
cap hbparameter-nosuch n1 cl_status hbparameter -p nosuch
cap hbparameter-noarg n1 cl_status hbparameter

cap hb_standby-bogus n1 /usr/share/heartbeat/hb_standby bogus
cap hb_standby-two n1 /usr/share/heartbeat/hb_standby all local
cap hb_takeover-bogus n1 /usr/share/heartbeat/hb_takeover bogus
cap hb_standby-help n1 /usr/share/heartbeat/hb_standby --help
cap hb_takeover-help n1 /usr/share/heartbeat/hb_takeover --help
cap hb_standby n1 /usr/share/heartbeat/hb_standby
wait_for n2 'remote resource transition completed\|all HA resource acquisition completed\|Acquiring resource group: n1'
sleep 4
cap standby.rscstatus-n1 n1 cl_status rscstatus
cap standby.rscstatus-n2 n2 cl_status rscstatus
cap standby.nodestatus n2 cl_status nodestatus n1
cap hb_takeover n1 /usr/share/heartbeat/hb_takeover all
sleep 5
cap takeover.rscstatus-n1 n1 cl_status rscstatus
cap takeover.rscstatus-n2 n2 cl_status rscstatus
cap hb_takeover-local n1 /usr/share/heartbeat/hb_takeover local
cap hb_standby-failback n2 /usr/share/heartbeat/hb_standby failback
sleep 4

# The peer dies.
for p in $(ip netns pids $P-n2); do
  case $(readlink /proc/$p/exe) in */heartbeat/heartbeat) kill -9 $p ;; esac
done
wait_for n1 'node n2: is dead'
sleep 2
cap dead.nodestatus n1 cl_status nodestatus n2
cap dead.hblinkstatus n1 cl_status hblinkstatus n2 eth1
cap dead.listnodes n1 cl_status listnodes
cap dead.rscstatus n1 cl_status rscstatus
cap dead.clientstatus n1 cl_status clientstatus n2 ipfail
echo "captured into $OUT"
