#!/usr/bin/env bash
# The browser tests: the emulator's demo page (demo.test.mjs) and
# @pushgate/client (clients/js) in Debian's chromium through playwright-core
# (which never downloads a browser of its own), and the same client in Node
# (node-client.test.mjs), against the emulator.
#
# Self-sufficient and idempotent on a fresh machine (run as root):
#   1. installs Debian's chromium when /usr/bin/chromium is missing;
#   2. installs the pinned npm packages into tests/browser/node_modules when
#      package-lock.json changed since the last install (npm ci);
#   3. builds target/debug/pushgate-local when it is missing or older than
#      its sources (cargo build --workspace --all-targets);
#   4. starts the emulator on a free port on 127.0.0.1 for the demo page test
#      and always stops it (by PID) on exit; the client tests start their own
#      emulators (each with the flags it needs: --max-duration-secs,
#      --idle-timeout-secs, fault injection, a DynamoDB endpoint on moto) and
#      stop them by PID (emulator.mjs);
#   5. runs the tests (node --test), which prints "N passed, N failed".
#
# Run from anywhere; scripts/test runs it from the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

say() { printf 'browser test: %s\n' "$*"; }

# 1. chromium -----------------------------------------------------------------
chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  say "installing Debian's chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -x "$chromium" ]; then
  say "no $chromium after apt-get install chromium" >&2
  exit 1
fi

# 2. npm packages (playwright-core, pinned in package-lock.json) --------------
stamp="$here/node_modules/.pushgate-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$here/node_modules/playwright-core" ]; then
  say "npm ci (playwright-core; no browser download)"
  (
    cd "$here"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  )
  echo "$want" >"$stamp"
fi

# 3. the emulator binary --------------------------------------------------------
# Built when missing, or older than its sources (the page and /client.js are
# include_str!ed, so a stale binary would serve a stale page or client). Always this package set: any
# other makes cargo rebuild the AWS SDKs.
emulator="${CARGO_TARGET_DIR:-$root/target}/debug/pushgate-local"
stale=""
if [ -x "$emulator" ]; then
  stale="$(find crates/pushgate-domain/src crates/pushgate-store/src crates/pushgate-push/src \
    crates/pushgate-functions/src crates/pushgate-local/src crates/pushgate-local/static clients/js/src \
    -type f -newer "$emulator" -print -quit 2>/dev/null || true)"
fi
if [ ! -x "$emulator" ] || [ -n "$stale" ]; then
  say "building the emulator (cargo build --workspace --all-targets)${stale:+; $stale is newer}"
  cargo build --workspace --all-targets
fi

# 4. start the emulator on a free port, always stop it ------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/pushgate-browser.XXXXXX")"
emulator_pid=""
log_shown=""
show_emulator_log() {
  [ -n "$log_shown" ] && return 0
  log_shown=1
  local f
  for f in "$work/emulator.out" "$work/emulator.err"; do
    if [ -s "$f" ]; then
      say "emulator output (last 40 lines of $f):"
      tail -n 40 "$f" | sed 's/^/  /'
    fi
  done
}
cleanup() {
  local status=$?
  if [ -n "$emulator_pid" ] && kill -0 "$emulator_pid" 2>/dev/null; then
    kill "$emulator_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$emulator_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ]; then
    show_emulator_log
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Quick redeliveries for the DLQ case (the defaults are the template's 180 s
# visibility timeout and 30 s notifier timeout; the emulator refuses a
# visibility timeout below the notifier's timeout, as Lambda does).
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$emulator" --port 0 \
  --notifier-timeout-secs 3 --visibility-timeout-secs 3 \
  >"$work/emulator.out" 2>"$work/emulator.err" &
emulator_pid=$!

base=""
for _ in $(seq 1 300); do
  line="$(grep -m1 '^pushgate-local: demo page ' "$work/emulator.out" 2>/dev/null || true)"
  if [ -n "$line" ]; then
    base="$(printf '%s\n' "$line" | grep -o 'http://127\.0\.0\.1:[0-9]*' | head -n1)"
    break
  fi
  if ! kill -0 "$emulator_pid" 2>/dev/null; then
    say "the emulator exited before printing its URLs" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$base" ]; then
  say "no 'demo page' line from the emulator within 30 s" >&2
  exit 1
fi
say "emulator (pid $emulator_pid) at $base/"

# 5. the test -------------------------------------------------------------------
# Node's spec report on stdout, a TAP copy to count from; the closing line is
# "N passed, N failed".
cd "$here"
status=0
# The client tests need moto for the DynamoDB restart case: MOTO_SERVER
# (scripts/test sets it), .venv/bin/moto_server, or moto_server on PATH;
# without one that case is skipped.
PUSHGATE_URL="$base/" CHROMIUM="$chromium" PUSHGATE_EMULATOR="$emulator" \
  node --experimental-websocket --test --test-concurrency=1 --test-timeout=300000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$work/report.tap" \
  demo.test.mjs client.test.mjs node-client.test.mjs || status=$?
passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/report.tap" 2>/dev/null | tail -n1 || true)"
failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/report.tap" 2>/dev/null | tail -n1 || true)"
if [ -z "$passed" ] || [ -z "$failed" ]; then
  say "the test runner gave no counts (exit $status)" >&2
  [ "$status" -ne 0 ] || status=1
elif [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
  say "no test ran" >&2
  status=1
fi
[ "$status" -eq 0 ] || show_emulator_log
printf 'browser: %s passed, %s failed\n' "${passed:-0}" "${failed:-0}"
exit "$status"
