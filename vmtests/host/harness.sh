#!/usr/bin/env bash
# Host-side test of scripts/vmtest itself: exit-status propagation, stdout
# carrying exactly the script's output (stderr merged in order, no kernel
# noise), the timeout path, the kernel-panic path and SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d /tmp/vmtest-harness.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=1; }

# run NAME [OPTIONS...] SCRIPT: runs scripts/vmtest; sets rc, out, err.
run() {
  local name=$1; shift
  rc=0
  scripts/vmtest "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  out=$(cat "$tmp/$name.out"; echo x); out=${out%x}
  err=$(cat "$tmp/$name.err")
}

# 1. Exit status and output: stdout and stderr interleaved in order, blank
#    lines kept, nothing else on stdout, nothing on stderr.
cat >"$tmp/status.sh" <<'SCRIPT'
echo one
echo two >&2
echo
echo three
echo
exit 7
SCRIPT
run status "$tmp/status.sh"
[ "$rc" = 7 ] && pass "script exit status 7 is vmtest's exit status" || fail "exit status: want 7, got $rc"
want=$'one\ntwo\n\nthree\n\n'
[ "$out" = "$want" ] && pass "stdout is exactly the script's output" ||
  fail "stdout: want $(printf %q "$want"), got $(printf %q "$out")"
[ -z "$err" ] && pass "stderr is empty on success" || fail "stderr not empty: $err"

# 2. Success is 0 even when the script leaves a chatty background process.
cat >"$tmp/ok.sh" <<'SCRIPT'
( while :; do echo noise; sleep 0.05; done ) &
echo last
SCRIPT
run ok "$tmp/ok.sh"
[ "$rc" = 0 ] && pass "status 0 with a leftover background process" || fail "leftover background process: want 0, got $rc: $err"
grep -qx last "$tmp/ok.out" && pass "output before the end is kept" || fail "'last' missing from: $out"

# 3. Kernel errors stay off stdout; when the script fails they go to stderr.
printf 'echo "<3>vmtest-harness-kernel-error" >/dev/kmsg\necho visible\nexit 1\n' >"$tmp/kerr.sh"
run kerr "$tmp/kerr.sh"
[ "$rc" = 1 ] && [ "$out" = $'visible\n' ] && pass "kernel errors are not on stdout" ||
  fail "kernel error test: want status 1 and stdout 'visible', got $rc and $(printf %q "$out")"
grep -q 'vmtest-harness-kernel-error' "$tmp/kerr.err" && pass "kernel errors on stderr when the script fails" ||
  fail "kernel error missing from stderr: $err"

# 4. Timeout: status 124 and a one-line reason, whatever the boot speed.
printf 'sleep 100000\n' >"$tmp/sleep.sh"
run timeout --timeout 10 "$tmp/sleep.sh"
[ "$rc" = 124 ] && pass "timeout gives status 124" || fail "timeout: want 124, got $rc"
grep -qx 'vmtest: timed out after 10s' "$tmp/timeout.err" && pass "timeout reason on stderr" || fail "timeout reason missing: $err"

# 5. Kernel panic (no init to run): status 125 and the panic line as reason.
printf 'true\n' >"$tmp/true.sh"
run panic --append rdinit=/does-not-exist "$tmp/true.sh"
[ "$rc" = 125 ] && pass "kernel panic gives status 125" || fail "panic: want 125, got $rc"
grep -q '^vmtest: kernel panic: .*Kernel panic' "$tmp/panic.err" && pass "panic reason on stderr" || fail "panic reason missing: $err"

# 6. SIGTERM to scripts/vmtest (as from a CI time limit) stops its guest at once
#    and exits 130, instead of waiting for --timeout.
printf 'echo started\nsleep 100000\n' >"$tmp/wait.sh"
scripts/vmtest "$tmp/wait.sh" >"$tmp/term.out" 2>"$tmp/term.err" &
vm=$!
for _ in $(seq 600); do grep -q started "$tmp/term.out" && break; sleep 0.5; done
qemu=$(pgrep -P "$(pgrep -P "$vm" -x timeout)" || true)
rc=0
kill -TERM "$vm"
wait "$vm" || rc=$?
[ "$rc" = 130 ] && pass "SIGTERM gives status 130" || fail "SIGTERM: want 130, got $rc"
grep -qx 'vmtest: interrupted' "$tmp/term.err" && pass "interrupt reason on stderr" || fail "interrupt reason missing: $(cat "$tmp/term.err")"
if [ -z "$qemu" ]; then
  fail "no QEMU process found for the SIGTERM test"
else
  for _ in $(seq 20); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$qemu" 2>/dev/null && fail "QEMU $qemu still runs after SIGTERM" || pass "SIGTERM stops QEMU"
fi

# 7. Usage errors are reported before anything boots.
run usage --timeout soon "$tmp/true.sh"
[ "$rc" = 2 ] && pass "bad --timeout is a usage error" || fail "bad --timeout: want 2, got $rc"

exit "$failed"
