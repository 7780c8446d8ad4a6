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

EXPERIMENTS=(prune_ofa intelcaffe_int8 ibm_deep_compression sparsebert_s4)  # `all`, in this order

# One paper's grid as a Hydra multirun. The quick grid is conf/experiment/NAME.yaml; with
# profile=full among the overrides, its paper-scale twin NAME_full.yaml runs instead. Cells
# already recorded are skipped; a failing cell is recorded FAILED and the grid goes on; the
# exit status is non-zero when a cell failed. The sweep dir is printed for `python -m suite.grid`.
run_experiment() {
  local exp="$1" name="$1"; shift
  local profile=quick a
  for a in "$@"; do [[ "$a" == profile=* ]] && profile="${a#profile=}"; done
  if [[ "$profile" == full && -f "conf/experiment/${exp}_full.yaml" ]]; then exp="${exp}_full"; fi
  if [[ ! -f "conf/experiment/${exp}.yaml" ]]; then
    echo "sparq: error: unknown experiment '$name'; allowed: all, $(cd conf/experiment && ls *.yaml | sed 's/\.yaml$//' | grep -v '_full$' | paste -sd, | sed 's/,/, /g')" >&2
    return 2
  fi
  local args=() dir="multirun/${exp%_full}-${profile}/$(date +%Y-%m-%d_%H-%M-%S)-$$"
  # Local default: cells in parallel worker processes, cores // n_jobs threads each (2 x 1 thread
  # on 2 cores beats 1 x 2 threads, most of all on a shared machine). Any hydra/launcher=... wins.
  [[ " $* " == *" hydra/launcher="* ]] || args+=("hydra/launcher=parallel" "hydra.launcher.n_jobs=${SPARQ_JOBS:-2}")
  for a in "$@"; do [[ "$a" == profile=* ]] || args+=("$a"); done
  SWEEP_DIRS+=("$dir")
  "$PY" -m suite.run -m "+experiment=$exp" "hydra.sweep.dir=$dir" "${args[@]}"
}
SWEEP_DIRS=()

cmd="${1:-main}"
case "$cmd" in
  setup) setup ;;
  test)
    shift; setup
    exec "$PY" -m pytest "$@" ;;
  main|-*|*=*)
    [[ "$cmd" == main ]] && shift || true
    setup
    "$PY" -m suite.run "$@"
    "$PY" -m suite.report ;;
  all)
    shift; setup
    status=0; start=$SECONDS
    for exp in "${EXPERIMENTS[@]}"; do run_experiment "$exp" "$@" || status=1; done
    echo "[sparq] all: $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s" >&2
    "$PY" -m suite.grid "${SWEEP_DIRS[@]}" || status=1  # combined summary of the four grids
    "$PY" -m suite.report || status=1
    exit "$status" ;;
  *)
    shift; setup
    status=0
    run_experiment "$cmd" "$@" || status=$?
    [[ "$status" == 2 ]] && exit 2
    "$PY" -m suite.report || status=1
    exit "$status" ;;
esac
