#!/usr/bin/env bash
# sparq entry point.
#   ./reproduce.sh                 main job: quick profile on the embedded MiniLM, then the local report
#   ./reproduce.sh EXPERIMENT|all  one paper's grid (conf/experiment/*.yaml), or all of them
#   ./reproduce.sh verdicts [hours=H] [tasks=sst2,mrpc]   run only the cells undecided claims need
#   ./reproduce.sh test [pytest args]   the test suite
#   ./reproduce.sh setup           create/update the virtual environment (.venv)
# Any further arguments are Hydra overrides (e.g. profile=smoke seed=1). profile=smoke|quick|full
# (conf/profile/*.yaml) replaces the grid's profile whole; anything else is refused up front.
# Bad input (an unknown option or value, a grid override no cell takes) is one `sparq: error:` line
# and exit 2, before any cell or report; SPARQ_DEBUG=1 shows tracebacks instead.
# Runs write their report to $SPARQ_REPORT_DIR (default runs/results/, git-ignored) and print a
# summary; the committed results/ changes only with `python -m suite.report --publish`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# Usage text only: no set-up, no Python, no run (tests/test_cli.py times it).
usage() {
  local exps tasks models
  exps="$(cd conf/experiment 2>/dev/null && ls *.yaml | sed 's/\.yaml$//' | grep -v '_full$' | paste -sd' ' || true)"
  tasks="$(cd conf/task 2>/dev/null && ls *.yaml | sed 's/\.yaml$//' | paste -sd'|' || true)"
  models="$(cd conf/model 2>/dev/null && ls *.yaml | sed 's/\.yaml$//' | paste -sd'|' || true)"
  cat <<USAGE
usage: ./reproduce.sh [COMMAND] [OVERRIDE...]

Commands (the first run sets up .venv itself):
  (none), main         the main job: fine-tune the embedded MiniLM on SST-2 (quick profile), then the report
  EXPERIMENT           one grid of conf/experiment/ (profile=full: its paper-scale NAME_full twin):
                       ${exps}
  all                  the four paper grids and three axis grids at the quick profile (prints its estimate first)
  test [PYTEST ARG...] the test suite
  setup                only create or update the virtual environment .venv
  -h, --help           this text

Common overrides (Hydra key=value; .venv/bin/python -m suite.run --help lists every group):
  profile=smoke|quick|full            a few steps (checks) | laptop CPU (default) | paper scale
  task=${tasks}
  model=${models}
  model.name_or_path=DIR              your own model: a local directory (or a hub id when online)
  sparsity=gmp sparsity.target=0.9    quant=ptq|qat|qat4    distill=logits|hidden|knowledge_aware
  seed=42                             in a grid, a list replaces the sweep's: seed=1,2,3 task=sst2,mrpc
  device=auto|cpu|cuda  threads=N     force=true re-runs a recorded cell

Where things go:
  runs               MLflow store sqlite:///mlflow.db (MLFLOW_TRACKING_URI); view: .venv/bin/mlflow ui
  report             runs/results/ (SPARQ_REPORT_DIR): tables, claims, plots, leaderboard.html
  grids              multirun/<experiment>-<profile>/<time>/ (summary: .venv/bin/python -m suite.grid DIR)
  data, cache        SPARQ_DATA_DIR (default ../shared/data), SPARQ_CACHE_DIR (default .cache: teachers)
  published          results/ changes only with: .venv/bin/python -m suite.report --publish

Past one machine:
  one cell, N processes   .venv/bin/torchrun --standalone --nproc_per_node=N -m suite.run [OVERRIDE...]
  a grid on SLURM         .venv/bin/python -m suite.run -m +experiment=NAME_full hydra/launcher=slurm
USAGE
}
case "${1:-}" in -h|--help|help) usage; exit 0 ;; esac
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
REPORT_DIR="${SPARQ_REPORT_DIR:-$ROOT/runs/results}"

# profile=NAME must be a file of conf/profile/ (checked before setup or any compute).
PROFILES="$(cd conf/profile && ls *.yaml | sed 's/\.yaml$//' | paste -sd, | sed 's/,/, /g')"
check_profile() {
  local a p
  for a in "$@"; do
    [[ "$a" == profile=* ]] || continue
    p="${a#profile=}"
    if [[ ! -f "conf/profile/$p.yaml" || "$p" == */* ]]; then
      echo "sparq: error: profile: unknown option '$p'; allowed: $PROFILES" >&2
      exit 2
    fi
  done
}

# The local report (tables, claims, plots, leaderboard) and the terminal summary of EXPERIMENTS
# (MLflow experiment names, <experiment_name>-<profile>).
report() {
  "$PY" -m suite.report --out "$REPORT_DIR" --summary "$@"
}

# `all`, in this order: the four papers' grids, then the sparsity and budget axes (issue 14)
EXPERIMENTS=(prune_ofa intelcaffe_int8 ibm_deep_compression sparsebert_s4 sparsity_curves sparsity_curves_patterns
             budget_curves)

# One paper's grid as a Hydra multirun. The quick grid is conf/experiment/NAME.yaml (its profile:
# conf/profile/grid/quick.yaml); with profile=full among the overrides, its paper-scale twin
# NAME_full.yaml runs instead; profile=smoke runs the quick grid at the smoke profile. Cells
# already recorded are skipped; a failing cell is recorded FAILED and the grid goes on; the exit
# status is non-zero when a cell failed. The sweep dir is printed for `python -m suite.grid`.
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
  # profile=quick is the grid's own quick profile (its sizes); smoke/full replace it.
  for a in "$@"; do [[ "$a" == profile=quick ]] || args+=("$a"); done
  SWEEP_DIRS+=("$dir")
  local ename
  ename="$(sed -n 's/^experiment_name: *\([A-Za-z0-9_.-]*\).*/\1/p' "conf/experiment/${exp}.yaml" | head -1)"
  MLFLOW_EXPERIMENTS+=("${ename:-$name}-${profile}")
  "$PY" -m suite.run -m "+experiment=$exp" "hydra.sweep.dir=$dir" "${args[@]}"
}
SWEEP_DIRS=() MLFLOW_EXPERIMENTS=()

cmd="${1:-main}"
case "$cmd" in
  setup) setup ;;
  test)
    shift; setup
    exec "$PY" -m pytest "$@" ;;
  main|-*|*=*)
    [[ "$cmd" == main ]] && shift || true
    check_profile "$@"
    setup
    profile=quick
    for a in "$@"; do [[ "$a" == profile=* ]] && profile="${a#profile=}"; done
    status=0
    "$PY" -m suite.run "$@" || status=$?
    [[ "$status" == 2 ]] && exit 2  # bad input: nothing ran
    report "default-$profile" || status=1
    exit "$status" ;;
  verdicts)
    # The verdict driver: runs only the cells that inconclusive claims need (suite/verdicts.py), then the
    # local report. hours=H caps the wall time of the cells it runs, tasks=a,b the tasks claims are judged on.
    shift; setup
    args=()
    for a in "$@"; do
      case "$a" in
        hours=*) args+=(--hours "${a#hours=}") ;;
        tasks=*) args+=(--tasks "${a#tasks=}") ;;
        *) args+=("$a") ;;
      esac
    done
    status=0
    "$PY" -m suite.verdicts "${args[@]}" || status=$?
    [[ "$status" == 2 ]] && exit 2
    report || status=1
    exit "$status" ;;
  all)
    shift; check_profile "$@"; setup
    status=0; start=$SECONDS
    profile=quick estimated=()
    for a in "$@"; do [[ "$a" == profile=* ]] && profile="${a#profile=}"; done
    for exp in "${EXPERIMENTS[@]}"; do  # profile=full: the paper-scale twins, in GPU-hours and core-hours
      [[ "$profile" == full && -f "conf/experiment/${exp}_full.yaml" ]] && estimated+=("${exp}_full") || estimated+=("$exp")
    done
    "$PY" -m suite.grid --estimate "${estimated[@]}" || true  # the ETA before the first cell
    for exp in "${EXPERIMENTS[@]}"; do
      rc=0; run_experiment "$exp" "$@" || rc=$?
      [[ "$rc" == 2 ]] && exit 2  # bad input (an override no grid takes): stop before any report
      [[ "$rc" == 0 ]] || status=1
    done
    echo "[sparq] all: $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s" >&2
    "$PY" -m suite.grid "${SWEEP_DIRS[@]}" || status=1  # combined summary of the four grids
    # the latency stage: the grids' packed models timed apart from training (refused when busy)
    "$PY" -m suite.latency $(printf -- '--experiment=%s ' "${MLFLOW_EXPERIMENTS[@]}") \
      || echo "[sparq] latency stage not recorded; rerun python -m suite.latency on an idle machine" >&2
    report "${MLFLOW_EXPERIMENTS[@]}" || status=1
    exit "$status" ;;
  *)
    shift; check_profile "$@"; setup
    status=0
    run_experiment "$cmd" "$@" || status=$?
    [[ "$status" == 2 ]] && exit 2
    report "${MLFLOW_EXPERIMENTS[@]}" || status=1
    exit "$status" ;;
esac
