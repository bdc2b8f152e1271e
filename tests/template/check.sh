#!/usr/bin/env bash
# Lint template.yaml offline: cfn-lint, then `sam validate --lint`.
# Fails if either tool exits non-zero or prints any finding.
# Needs `cfn-lint` and `sam` on PATH (e.g. a venv with aws-sam-cli and cfn-lint).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE
export SAM_CLI_TELEMETRY=0

for tool in cfn-lint sam; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check.sh: '$tool' not found on PATH" >&2
    exit 127
  fi
done

status=0

echo "== cfn-lint $(cfn-lint --version 2>&1 | awk '{print $NF}')"
if ! out="$(cfn-lint -- template.yaml 2>&1)"; then
  status=1
fi
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  status=1
fi

echo "== sam validate --lint ($(sam --version 2>&1))"
if ! out="$(sam validate --lint --region us-east-1 --template-file template.yaml 2>&1)"; then
  status=1
  printf '%s\n' "$out"
else
  # On success SAM prints exactly one line: "<path> is a valid SAM Template".
  extra="$(printf '%s\n' "$out" | grep -v 'is a valid SAM Template$' | grep -v '^[[:space:]]*$' || true)"
  if [ -n "$extra" ]; then
    printf '%s\n' "$extra"
    status=1
  fi
fi

if [ "$status" -eq 0 ]; then
  echo "template checks passed"
else
  echo "template checks FAILED" >&2
fi
exit "$status"
