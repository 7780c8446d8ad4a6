#!/usr/bin/env bash
# sparq entry point.
#   ./reproduce.sh                 main job: quick profile on the embedded MiniLM, then rebuild results/
#   ./reproduce.sh EXPERIMENT|all  one paper's grid (conf/experiment/*.yaml), or all of them
#   ./reproduce.sh test [pytest args]   the test suite
#   ./reproduce.sh setup           create/update the virtual environment (.venv)
# Any further arguments are Hydra overrides (e.g. profile=smoke seed=1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

setup() {
  local stamp="$VENV/.sparq-setup" want
  want="$(sha256sum pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  echo "[sparq] setting up $VENV" >&2
  [[ -x "$PY" ]] || "${PYTHON:-python3}" -m venv "$VENV"
  # torch first, pinned, so that nothing resolves to a newer (CUDA) build.
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -c constraints.txt "torch==2.13.0"
  "$PY" -m pip install -q -c constraints.txt -e ".[dev]"
  "$PY" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  echo "$want" >"$stamp"
}

export SPARQ_DATA_DIR="${SPARQ_DATA_DIR:-$ROOT/../shared/data}"
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0

cmd="${1:-main}"
case "$cmd" in
  setup) setup ;;
  test)
    shift; setup
    exec "$PY" -m pytest "$@" ;;
  main|all|-*|*=*)
    [[ "$cmd" == main ]] && shift || true
    setup
    "$PY" -m suite.run "$@"
    "$PY" -m suite.report ;;
  *)
    shift; setup
    "$PY" -m suite.run -m "+experiment=$cmd" "$@"
    "$PY" -m suite.report ;;
esac
