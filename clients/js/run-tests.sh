#!/usr/bin/env bash
# The @pushgate/client tests: unit tests on fake sockets, timers and fetch
# (node --test), then the type declarations checked with tsc --noEmit.
#
# Idempotent: npm ci runs only when package-lock.json changed since the last
# install (or node_modules is missing). Run from anywhere; prints
# "client js: N passed, N failed" last.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
say() { printf 'client js: %s\n' "$*"; }

stamp="$here/node_modules/.pushgate-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x node_modules/.bin/tsc ]; then
  say "npm ci (typescript, dev only)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pushgate-client-js.XXXXXX")"
trap 'rm -rf "$work"' EXIT

status=0
node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$work/report.tap" \
  test/*.test.js || status=$?
passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/report.tap" | tail -n1)"
failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/report.tap" | tail -n1)"

say "tsc --noEmit (index.d.ts, test/types.ts)"
if ./node_modules/.bin/tsc -p test/tsconfig.json; then
  passed=$(( ${passed:-0} + 1 ))
else
  failed=$(( ${failed:-0} + 1 ))
  status=1
fi
printf 'client js: %s passed, %s failed\n' "${passed:-0}" "${failed:-0}"
exit "$status"
