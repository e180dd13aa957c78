#!/bin/sh
# The agent's idle cost in the QEMU guest (BPF-LSM, default hostVisibility,
# the example policies, no workload, no client): CPU time (utime+stime of
# /proc/PID/stat) and context switches of all its threads per second, after
# it settled. Run from the repository root:
#   scripts/vmtest --add examples/policies scripts/idle-guest.sh
# (VMTEST_KUBEARMOR=BINARY measures another build.) docs/benchmarks.md, "Idle agent".
settle=15 window=30
mkdir -p /etc/kubearmor/policies
cp /opt/vmtest/policies/*.yaml /etc/kubearmor/policies/
kubearmor --gRPC 0 --socket "" > /tmp/agent.log 2>&1 &
pid=$!
i=0
until grep -q "kubearmor ready" /tmp/agent.log; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then echo "agent did not start"; cat /tmp/agent.log; exit 1; fi
  sleep 0.1
done
grep -o 'enforcer chosen.*' /tmp/agent.log
sleep $settle
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
switches() { cat /proc/$pid/task/*/status | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n}'; }
up() { cut -d' ' -f1 /proc/uptime; }
c0=$(cpu) s0=$(switches) t0=$(up)
sleep $window
c1=$(cpu) s1=$(switches) t1=$(up)
# USER_HZ is 100 on x86.
awk -v c="$((c1 - c0))" -v s="$((s1 - s0))" -v t0="$t0" -v t1="$t1" -v n="$(ls /proc/$pid/task | wc -l)" \
  'BEGIN {t = t1 - t0; printf "idle agent: %.1f ms CPU/s, %.1f context switches/s, %d threads, over %.1f s\n", c * 10 / t, s / t, n, t}'
kill $pid; wait $pid
