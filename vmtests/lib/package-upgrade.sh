# Guest side of vmtests/55-package-upgrade-*.sh, sourced after guest.sh.
# The packaged layout in the guest: the .deb of an old and a new build
# (vmtests/lib/package-build.sh), unpacked and configured with the package's
# own maintainer scripts in dpkg's order. The guest runs no systemd (busybox
# init), so the maintainer scripts skip their systemctl and
# deb-systemd-invoke lines, and this file does by hand what systemd would
# for the installed unit file: run its ExecStart= with INVOCATION_ID set
# (so the agent believes it runs under systemd and leaves the kernel state
# for the next agent), stop with SIGTERM, then run its ExecStopPost= line
# (which, finding no systemctl, cannot tell a stop from a restart and keeps
# the kernel state: the safe side). The systemd side is checked under real
# systemd by the nspawn package test (packaging/test/inside.sh).
PKG=/opt/vmtest/pkg
UNIT=/usr/lib/systemd/system/kubearmor.service
ALERTS=/var/log/kubearmor/alerts.jsonl
AGENT_LOG=/tmp/agent.log

# unpack VERSION: dpkg's unpack: every file written as NAME.dpkg-new and
# renamed over the old one (a running binary is replaced, not overwritten);
# a conffile that exists is the admin's and stays.
unpack() {
  (cd "$PKG/$1/root" && find . -type d) | while read -r d; do mkdir -p "/${d#./}"; done
  (cd "$PKG/$1/root" && find . ! -type d) | while read -r f; do
    dst=/${f#./}
    if [ -e "$dst" ] && grep -qx "$dst" "$PKG/$1/control/conffiles" 2>/dev/null; then continue; fi
    cp -a "$PKG/$1/root/$f" "$dst.dpkg-new" && mv "$dst.dpkg-new" "$dst"
  done
}

# purge_files VERSION: dpkg's removal of the package's files (not conffiles)
purge_files() {
  (cd "$PKG/$1/root" && find . ! -type d) | while read -r f; do
    dst=/${f#./}
    grep -qx "$dst" "$PKG/$1/control/conffiles" 2>/dev/null || rm -f "$dst"
  done
}

# maint VERSION SCRIPT ARGS...: one maintainer script of that package
maint() {
  v=$1; s=$2; shift 2
  [ -x "$PKG/$v/control/$s" ] || return 0
  if "$PKG/$v/control/$s" "$@" > /tmp/maint.out 2>&1; then pass "$s $* ($v)"; else fail "$s $* ($v)"; sed 's/^/     | /' /tmp/maint.out; fi
}

unit_line() { sed -n "s/^$1=//p" "$UNIT"; }

# start_unit: the unit's ExecStart=, with what systemd sets up for it
# (RuntimeDirectory, LogsDirectory, INVOCATION_ID), until it is ready.
start_unit() {
  mkdir -p /run/kubearmor /var/log/kubearmor
  : > "$AGENT_LOG"
  : > "$ALERTS"
  # shellcheck disable=SC2046 # the unit's command line, split as systemd does for plain words
  INVOCATION_ID=vmtest $(unit_line ExecStart) > "$AGENT_LOG" 2>&1 &
  MAINPID=$!
  if ! wait_for "$AGENT_LOG" "kubearmor ready" >/dev/null; then
    fail "the unit's agent did not start"; cat "$AGENT_LOG"; exit 1
  fi
}

# stop_unit: SIGTERM (KillSignal=), wait, then the unit's ExecStopPost=
# with %n expanded.
stop_unit() {
  kill -TERM "$MAINPID"; wait "$MAINPID"
  post=$(unit_line ExecStopPost | sed 's/%n/kubearmor.service/')
  echo "ExecStopPost: $post"
  $post > /tmp/stoppost.out 2>&1
  sed 's/^/     | /' /tmp/stoppost.out
}

# The admin's setup: the group systemd-sysusers would create, and a config
# that writes alerts to a file (a conffile: the upgrade keeps it).
setup_host() {
  grep -q '^kubearmor:' /etc/group || echo 'kubearmor:x:999:' >> /etc/group
}
configure_agent() {
  sed -i -e 's#^logPath: .*#logPath: '"$ALERTS"'#' -e 's/^alertThrottling: .*/alertThrottling: false/' \
    -e 's/^hostVisibility: .*/hostVisibility: none/' /etc/kubearmor/kubearmor.yaml
}

# run_package_upgrade: install 1.0.0, enforce, upgrade to 1.0.1 while a loop
# tries a blocked exec and a blocked open, remove.
run_package_upgrade() {
  gap_fixture true gapu
  rm -f /usr/bin/kubearmor # the harness's copy: the package brings its own
  setup_host

  echo "== install 1.0.0"
  unpack 1.0.0
  maint 1.0.0 postinst configure ""
  configure_agent
  start_unit
  check "the packaged agent is 1.0.0" sh -c 'kubearmor version | grep -qx 1.0.0'
  grep 'enforcer chosen' "$AGENT_LOG"
  gap_policy
  denied "exec refused" "Permission denied" /bin/sh -c /tmp/blocked/true
  denied "open refused" "Permission denied" /tmp/cat /srv/sec/secret.txt

  : > /tmp/leak
  ( n=0; while [ ! -e /tmp/loop.stop ]; do
      /bin/sh -c /tmp/blocked/true 2>/dev/null && echo "exec $(date +%s.%N)" >> /tmp/leak
      /tmp/cat /srv/sec/secret.txt >/dev/null 2>&1 && echo "open $(date +%s.%N)" >> /tmp/leak
      n=$((n + 1)); echo $n > /tmp/loop.count
      sleep 0.3
    done ) &
  LOOP=$!

  # a few rounds under the old agent first
  until [ "$(cat /tmp/loop.count 2>/dev/null || echo 0)" -ge 3 ]; do sleep 0.2; done

  echo "== upgrade to 1.0.1 (dpkg's order: old prerm, unpack, old postrm, new postinst, then the restart)"
  before=$(cat /tmp/loop.count)
  maint 1.0.0 prerm upgrade 1.0.1
  unpack 1.0.1
  maint 1.0.0 postrm upgrade 1.0.1
  maint 1.0.1 postinst configure 1.0.0
  check "the installed binary is 1.0.1 while 1.0.0 still runs" sh -c 'kubearmor version | grep -qx 1.0.1'
  stop_unit
  check "ExecStopPost kept the kernel state for the next agent" grep -q 'kernel enforcement kept' /tmp/stoppost.out
  denied "gap (upgrade): exec refused with no agent" "Permission denied" /bin/sh -c /tmp/blocked/gapu
  start_unit
  after=$(cat /tmp/loop.count)
  if [ "$after" -gt "$before" ]; then pass "the loop tried $((after - before)) times during the upgrade"; else fail "the loop did not run during the upgrade"; fi
  grep 'enforcer kernel state' "$AGENT_LOG"
  check "the upgraded agent adopted the kernel state" grep -q 'enforcer kernel state.*adopted' "$AGENT_LOG"
  denied "after the upgrade the exec is refused" "Permission denied" /bin/sh -c /tmp/blocked/true
  denied "after the upgrade the open is refused" "Permission denied" /tmp/cat /srv/sec/secret.txt
  alert "the upgraded agent reports" '"Resource":"/srv/sec/secret.txt' '"Action":"Block"'
  touch /tmp/loop.stop; wait $LOOP
  if [ -s /tmp/leak ]; then fail "attempts succeeded: $(head -3 /tmp/leak)"; else pass "not one of $(cat /tmp/loop.count) attempts (an exec and an open each) succeeded"; fi

  echo "== remove (prerm's stop, then its kubearmor detach; the files; postrm)"
  stop_unit
  maint 1.0.1 prerm remove
  purge_files 1.0.1
  maint 1.0.1 postrm remove
  check "the binary is gone" test ! -e /usr/bin/kubearmor
  check "after removal the exec works" /bin/sh -c /tmp/blocked/true
  check "after removal the open works" /tmp/cat /srv/sec/secret.txt
  check "nothing pinned" test ! -e /sys/fs/bpf/kubearmor
  check "no AppArmor profile of ours loaded" sh -c '! grep -q "^kubearmor-" /sys/kernel/security/apparmor/profiles'
}
