#!/usr/bin/env bash
# The project's test command (called by `make test` and CI).
# Tier 1: library unit/property tests; tier 2: the ordered smoke pipeline through the runner
# (tests/test_pipeline.py); tier 3: nbval executes every notebook under the smoke profile.
set -uo pipefail
PY=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
export WEAKHAND_PROFILE=smoke
export PYTHONDONTWRITEBYTECODE=1
start=$(date +%s)
"$PY" -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider -q \
    -o addopts="-ra --strict-markers"
rc=$?
echo "test wall time: $(( $(date +%s) - start )) s"
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
