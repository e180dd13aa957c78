# Helpers for guest-side VM tests: sourced from /opt/vmtest/guest.sh.
# Each check prints "ok   ..." or "FAIL ..."; finish exits 1 if any failed.

failed=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=1; }

# check DESCRIPTION COMMAND...: COMMAND must succeed.
check() {
  desc=$1; shift
  if "$@" >/tmp/check.out 2>&1; then pass "$desc"; else fail "$desc"; sed 's/^/     | /' /tmp/check.out | tail -5; fi
}

# denied DESCRIPTION ERRTEXT COMMAND...: COMMAND must fail and print ERRTEXT.
denied() {
  desc=$1; text=$2; shift 2
  if "$@" >/tmp/check.out 2>&1; then
    fail "$desc (it succeeded)"
  elif grep -q "$text" /tmp/check.out; then
    pass "$desc"
  else
    fail "$desc (no \"$text\")"; sed 's/^/     | /' /tmp/check.out | tail -5
  fi
}

# wait_for FILE TEXT...: wait (at most WAIT_SECS, default 60 s of guest time:
# TCG is slow) until one line of FILE contains every TEXT; prints that line.
wait_for() {
  file=$1; shift
  end=$(($(date +%s) + ${WAIT_SECS:-60}))
  while :; do
    if [ -f "$file" ]; then
      line=$(grep_all "$file" "$@" | tail -n 1)
      if [ -n "$line" ]; then echo "$line"; return 0; fi
    fi
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

# grep_all FILE TEXT...: lines of FILE that contain every TEXT (fixed strings).
grep_all() {
  file=$1; shift
  awk -v n=$# 'BEGIN { for (i = 1; i <= n; i++) want[i] = ARGV[i + 1]; ARGC = 2 }
    { ok = 1; for (i = 1; i <= n; i++) if (index($0, want[i]) == 0) { ok = 0; break } if (ok) print }' "$file" "$@"
}

# alert DESCRIPTION FIELD...: an alert with every "Key":"value" fragment must
# arrive in the agent's JSON lines.
alert() {
  desc=$1; shift
  if line=$(wait_for "$ALERTS" "$@"); then pass "$desc"; else fail "$desc: no alert with $*"; tail -n 3 "$ALERTS" | sed 's/^/     | /'; fi
}

# no_alert DESCRIPTION FIELD...: no such alert may exist (checked after a
# later alert proved the pipeline moved on).
no_alert() {
  desc=$1; shift
  if [ -n "$(grep_all "$ALERTS" "$@")" ]; then fail "$desc"; else pass "$desc"; fi
}

# changed COMMAND...: run COMMAND (a change to the policy directory), then wait
# until the agent has published a new rule set.
changed() {
  n=$(grep -c "policies in force" "$AGENT_LOG")
  "$@"
  end=$(($(date +%s) + ${WAIT_SECS:-60}))
  while [ "$(grep -c "policies in force" "$AGENT_LOG")" -le "$n" ]; do
    if [ "$(date +%s)" -ge "$end" ]; then fail "no new rule set after: $*"; return 1; fi
    sleep 0.2
  done
}

# policy NAME: install the policy text on stdin as NAME.yaml and wait until
# the agent has it in force.
policy() {
  cat > "/tmp/$1.yaml.new"
  changed mv "/tmp/$1.yaml.new" "/etc/kubearmor/policies/$1.yaml"
  grep "policies in force" "$AGENT_LOG" | tail -n 1 | grep -q "$1" || fail "policy $1 not in force"
}

# gap_fixture NAMES...: what the restart and upgrade tests loop on while
# agents come and go: programs /tmp/blocked/NAME (busybox), a secret file
# and a copy of busybox to read it with; gap_policy blocks both.
gap_fixture() {
  mkdir -p /tmp/blocked /srv/sec
  for n in "$@"; do cp /bin/busybox "/tmp/blocked/$n"; done
  echo secret > /srv/sec/secret.txt
  cp /bin/busybox /tmp/cat
}

gap_policy() {
  policy gap <<'EOP'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: gap
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchDirectories:
    - dir: /tmp/blocked/
  file:
    matchPaths:
    - path: /srv/sec/secret.txt
  action: Block
EOP
}

# start_agent ARGS...: start kubearmor in the background, wait until ready.
start_agent() {
  ALERTS=/tmp/alerts.jsonl
  AGENT_LOG=/tmp/agent.log
  : > "$ALERTS"
  # Emptied here, not only by the redirection below: that runs in the
  # background job, and wait_for could see a previous agent's "ready".
  : > "$AGENT_LOG"
  # Telemetry off: the checks below poll files, and logging those polls
  # would bury the alerts (and slow the emulated guest down).
  kubearmor --logPath "$ALERTS" --gRPC 0 --socket "" --alertThrottling=false --hostVisibility none "$@" > "$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  # A start waits at least 180 s: the AppArmor tier compiles its profiles
  # with apparmor_parser, which in an emulated guest on a loaded host has
  # taken over the 60 s the other waits default to.
  start_wait=${WAIT_SECS:-60}
  [ "$start_wait" -ge 180 ] || start_wait=180
  if ! WAIT_SECS=$start_wait wait_for "$AGENT_LOG" "kubearmor ready" >/dev/null; then
    fail "agent did not start"; cat "$AGENT_LOG"; exit 1
  fi
}

stop_agent() {
  kill -TERM "$AGENT_PID"
  wait "$AGENT_PID"
  rc=$?
  if [ $rc -eq 0 ]; then pass "agent stopped cleanly on SIGTERM"; else fail "agent exit status $rc"; tail -n 20 "$AGENT_LOG"; fi
}

finish() {
  if [ $failed -ne 0 ]; then
    echo "--- agent log (last 40 lines)"; tail -n 40 "$AGENT_LOG"
    exit 1
  fi
  exit 0
}
