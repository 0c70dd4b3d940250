#!/usr/bin/env bash
# Run the code-asset tests against the newest azure-ai-ml (.venv, as `make setup` left it from
# constraints.txt) and the oldest one the project supports (.venv-oldest, built here from
# constraints-oldest.txt and rebuilt when it or pyproject.toml changes). Makefile-friendly: exit 0 only
# when every environment passes; one summary line per environment at the end.
#
#   scripts/test-sdk-matrix.sh            # both
#   scripts/test-sdk-matrix.sh oldest     # only the oldest (newest, oldest, all)
#   PYTHON=python3.11 PYTEST_ARGS="-x" scripts/test-sdk-matrix.sh
#   SDK_MATRIX_WORKERS=1 scripts/test-sdk-matrix.sh   # no pytest-xdist workers (default 2: the tests mostly wait)
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHICH="${1:-all}"
OLDEST_VENV="${OLDEST_VENV:-.venv-oldest}"
NEWEST_VENV="${NEWEST_VENV:-.venv}"
# The tests that depend on the SDK's behaviour (and the sandbox that emulates the workspace).
TESTS=(${SDK_MATRIX_TESTS:-tests/integration/test_code_register.py tests/unit/test_code_register.py
       tests/unit/test_code_sdk.py tests/unit/test_sandbox_aml.py tests/integration/test_aml_jobs_sdk.py
       tests/integration/test_model_mirror.py tests/unit/test_model_mirror.py
       tests/integration/test_aml_run_history.py})
read -r -a EXTRA <<< "${PYTEST_ARGS:-}"
WORKERS="${SDK_MATRIX_WORKERS:-2}"

existing_tests() {
  local t
  for t in "${TESTS[@]}"; do [[ -e "$t" ]] && printf '%s\n' "$t"; done
}

ensure_venv() {  # $1 venv, $2 constraints file
  local venv="$1" constraints="$2"
  local stamp="$venv/.stamp-matrix"
  local want
  want="$(cat "$constraints" pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "== building $venv from $constraints" >&2
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1
  "$venv/bin/python" -m pip install --quiet -c "$constraints" -e '.[dev]' || return 1
  echo "$want" > "$stamp"
}

versions() {  # $1 venv
  "$1/bin/python" - <<'PY'
from importlib.metadata import version
print(", ".join(f"{d} {version(d)}" for d in ("azure-ai-ml", "azure-core", "marshmallow", "azure-storage-blob")))
PY
}

run_one() {  # $1 label, $2 venv, $3 constraints (empty: use the venv as it is, e.g. `make setup`'s .venv)
  local label="$1" venv="$2" constraints="$3"
  if [[ -z "$constraints" ]]; then
    if [[ ! -x "$venv/bin/python" ]]; then
      SUMMARY+=("$label: $venv does not exist (run \`make setup\` first)")
      return 1
    fi
  elif ! ensure_venv "$venv" "$constraints"; then
    SUMMARY+=("$label: FAILED to build $venv from $constraints")
    return 1
  fi
  local v
  v="$(versions "$venv")"
  echo "== $label ($v)" >&2
  local tests
  mapfile -t tests < <(existing_tests)
  local parallel=()
  if [[ "$WORKERS" != 1 ]] && "$venv/bin/python" -c "import xdist" 2>/dev/null; then
    parallel=(-n "$WORKERS" --dist loadgroup)  # each worker starts its own sandbox
  fi
  local log
  log="$(mktemp)"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "${parallel[@]}" "${EXTRA[@]}" "${tests[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local tail
  tail="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -n 1 | sed 's/=//g; s/^ *//')"
  rm -f "$log"
  SUMMARY+=("$label [$v]: ${tail:-no summary} (exit $rc)")
  return "$rc"
}

SUMMARY=()
STATUS=0
case "$WHICH" in
  newest) run_one newest "$NEWEST_VENV" "" || STATUS=1 ;;
  oldest) run_one oldest "$OLDEST_VENV" constraints-oldest.txt || STATUS=1 ;;
  all)
    run_one newest "$NEWEST_VENV" "" || STATUS=1
    run_one oldest "$OLDEST_VENV" constraints-oldest.txt || STATUS=1
    ;;
  *) echo "usage: $0 [newest|oldest|all]" >&2; exit 2 ;;
esac

echo
echo "SDK matrix:"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
exit "$STATUS"
