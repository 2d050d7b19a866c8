#!/usr/bin/env bash
# The GPU check of issue 22, in one call on a bare GPU machine (docs/performance.md, "On a GPU").
#
#   make gpu-kit                      # here: wheels the device image lacks, into .whl/ (ignored by git)
#   bash scripts/gpu_check.sh         # there, with .whl carried: under 8 minutes, everything in $OUT
#   bash scripts/gpu_check.sh --dry-run   # here: the same steps on the CPU, tiny sizes (a slow test)
#
# It installs the carried wheels with --no-deps into a fresh target folder, runs ganexp from this
# source tree with the machine's own torch (ganexp/__init__.py maps conf/ to ganexp.conf there), and
# writes $OUT/report.md plus one log per step. Each step has its own time limit (timeout), and all
# of them together stay inside $GPU_CHECK_BUDGET seconds, so one hang cannot eat the lease:
#   1 env       GPU name, torch/CUDA versions, nvidia-smi
#   2 tests     pytest -m cuda, then a small device-independent subset of the fast tests on the device
#   3 bench     scripts/bench_train.py: plain fp32 loop vs ganexp default, bf16, compile, channels_last,
#               fused_adam, all; 32 and 64 px; batch 64 and 256; images/s and peak memory
#   4 digits    experiment=digits_best cut to fit, in the fastest variant of step 3, with fid_clf
#   5 torchrun  a 1-GPU torchrun run, then its resume
# Environment: OUT (default outputs/gpu_check), GPU_CHECK_PYTHON (python3), GPU_CHECK_WHEELS (.whl),
# GPU_CHECK_BUDGET (seconds, 470; the dry run 1800).
set -u
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${GPU_CHECK_PYTHON:-python3}
OUT=${OUT:-$ROOT/outputs/gpu_check}
WHL=${GPU_CHECK_WHEELS:-$ROOT/.whl}
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
T=$WORK/site                                   # a fresh target folder: the carried wheels only
mkdir -p "$OUT" "$T" "$WORK/cache" "$WORK/runs"
export PYTHONPATH="$ROOT:$T" PYTHONUNBUFFERED=1 MPLBACKEND=Agg GANEXP_CACHE="$WORK/cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"
REPORT=$OUT/report.md
if [ $DRY = 1 ]; then
  DEV=cpu; BUDGET=${GPU_CHECK_BUDGET:-1800}  # generous: the shared 2-core machine runs it under load
  LIMITS=(install=120 env=60 tests=400 bench=400 digits=400 torchrun=400)
  BENCH=(--device cpu --resolutions 32 --batches 8 --width 8 --steps 4 --warmup 2 --rounds 1 --mlp-steps 0
         --variants bf16,channels_last,fused_adam)
  DIGITS=(train.steps=8 train.batch_size=16 train.log_every=4 train.sample_every=8 train.ckpt_every=8
          eval.every=8 eval.num_samples=100 eval.batch_size=100 train.num_fixed=16)
  RUN=(train.steps=6 train.log_every=3 train.sample_every=0 train.ckpt_every=3 train.batch_size=8 metrics=[])
  TESTS=(tests/test_losses.py tests/test_cuda_path.py)
else
  DEV=cuda; BUDGET=${GPU_CHECK_BUDGET:-470}
  LIMITS=(install=40 env=20 tests=80 bench=190 digits=90 torchrun=50)
  BENCH=(--device cuda --resolutions 32,64 --batches 64,256 --width 64 --steps 300 --warmup 30 --rounds 1
         --mlp-steps 0 --variants bf16,compile,channels_last,fused_adam,all --budget-s 110)
  DIGITS=(train.steps=3000 train.log_every=500 train.sample_every=1500 train.ckpt_every=1500 eval.every=3000
          eval.num_samples=5000)
  RUN=(train.steps=400 train.log_every=100 train.sample_every=0 train.ckpt_every=200 metrics=[])
  TESTS=(tests/test_losses.py tests/test_cuda_path.py tests/test_train.py tests/test_hooks_engine.py)
fi
START=${GPU_CHECK_START:-$(date +%s)}
limit_of() { local kv; for kv in "${LIMITS[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; }
: "${GPU_CHECK_STEP:=}"
[ -z "$GPU_CHECK_STEP" ] && : > "$REPORT.rows"
FAILED=0

# step NAME FUNCTION: runs FUNCTION (this script again, in a child) under its own limit (less when the
# budget is nearly spent), logging to $OUT/NAME.log
step() {
  local name=$1 fn=$2; shift 2
  local lim left t0 rc
  lim=$(limit_of "$name"); left=$((BUDGET - ($(date +%s) - START)))
  [ "$left" -lt "$lim" ] && lim=$left
  if [ "$lim" -le 5 ]; then
    echo "| $name | skipped: the budget of ${BUDGET} s is spent | - | - |" >> "$REPORT.rows"; FAILED=1; return 1
  fi
  echo "== $name (limit ${lim} s)"
  t0=$(date +%s)
  GPU_CHECK_STEP=$fn GPU_CHECK_WORK=$WORK GPU_CHECK_START=$START OUT=$OUT \
    timeout -k 5 "$lim" bash "${BASH_SOURCE[0]}" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 )) status=ok
  [ $rc = 124 ] || [ $rc = 137 ] && status="timed out"
  [ $rc != 0 ] && [ "$status" = ok ] && status="failed (rc $rc)"
  [ $rc != 0 ] && FAILED=1
  echo "| $name | $status | ${took} s | ${lim} s |" >> "$REPORT.rows"
  echo "   $status in ${took} s"
  return $rc
}

install() {
  set -e
  ls "$WHL"/*.whl
  "$PY" -m pip install --no-deps --no-index --no-compile --target "$T" "$WHL"/*.whl
  if [ -d "$WHL/cache" ]; then cp -r "$WHL/cache/." "$GANEXP_CACHE/"; fi
  cd /  # from anywhere: the configs come from the source tree's conf/ (ganexp.conf)
  "$PY" -c "import ganexp, ganexp.conf, hydra, omegaconf, mlxtend, torch; print('ganexp from', ganexp.__file__, '| torch', torch.__version__)"
  "$PY" -m ganexp train --cfg job device=$DEV > /dev/null
}

env_info() {
  "$PY" - <<'EOF'
import platform, sys, torch
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU:", torch.cuda.get_device_name(0), f"| {p.total_memory / 2**30:.0f} GiB | sm_{p.major}{p.minor} | count", torch.cuda.device_count())
else:
    print("GPU: none (CPU dry run)")
EOF
  nvidia-smi 2>&1 || echo "nvidia-smi: not here"
}

tests() {
  local rc=0
  "$PY" -m pytest -p no:cacheprovider -q -m cuda tests || [ $? = 5 ] || rc=1   # 5: none collected
  GANEXP_TEST_DEVICE=$DEV "$PY" -m pytest -p no:cacheprovider -q -m "not slow" "${TESTS[@]}" || rc=1
  return $rc
}

fastest() {  # the overrides of the fastest ganexp variant at 32 px, batch 64 (the digits run's size)
  "$PY" - "$OUT/bench.json" <<'EOF'
import json, sys
sys.path.insert(0, "scripts")
from bench_train import VARIANTS
try:
    rows = [r for r in json.load(open(sys.argv[1])) if r["variant"] != "plain"]
except (OSError, ValueError):
    rows = []
small = [r for r in rows if r["resolution"] == 32 and r["batch"] == 64] or rows
best = max(small, key=lambda r: r["steps_per_s"])["variant"] if small else "default"
print(best, *VARIANTS.get(best, []))
EOF
}

digits() {
  local v
  read -r -a v <<< "$(fastest)"
  echo "fastest variant: ${v[0]}"
  "$PY" -m ganexp train experiment=digits_best device=$DEV "${v[@]:1}" "${DIGITS[@]}" out_dir="$WORK/runs/digits"
  "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print('status', m['status'], 'step', m['step'], 'fid_clf', m.get('metrics/fid_clf'))" "$WORK/runs/digits/metrics.json"
}

torchrun_resume() {
  set -e
  local half=("${RUN[@]}") full=()
  "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m ganexp train device=$DEV "${RUN[@]}" \
    out_dir="$WORK/runs/ddp"
  for a in "${RUN[@]}"; do case $a in train.steps=*) full+=("train.steps=$(( ${a#*=} * 2 ))");; *) full+=("$a");; esac; done
  "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m ganexp train device=$DEV "${full[@]}" \
    resume="$WORK/runs/ddp"
  "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print('status', m['status'], 'step', m['step']); sys.exit(m['status'] != 'done')" "$WORK/runs/ddp/metrics.json"
}

bench() {
  "$PY" scripts/bench_train.py "${BENCH[@]}" --json "$OUT/bench.json"
}

if [ -n "${GPU_CHECK_STEP:-}" ]; then  # a child running one step
  "$GPU_CHECK_STEP"
  exit $?
fi
FLAG=$([ $DRY = 1 ] && echo --dry-run)
step install install $FLAG
step env env_info $FLAG
step tests tests $FLAG
step bench bench $FLAG
step digits digits $FLAG
step torchrun torchrun_resume $FLAG

{
  echo "# GPU check ($( [ $DRY = 1 ] && echo 'CPU dry run' || echo GPU ), $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - START )) s of ${BUDGET} s)"
  echo
  echo '```'; head -3 "$OUT/env.log" 2>/dev/null; echo '```'
  echo
  echo "| step | result | took | limit |"; echo "| --- | --- | ---: | ---: |"
  cat "$REPORT.rows"
  echo
  echo "## Tests"; echo '```'; grep -E "passed|failed|error|skipped|no tests ran" "$OUT/tests.log" | tail -4; echo '```'
  echo "## Training speed (scripts/bench_train.py ${BENCH[*]})"; echo '```'
  grep -vE "^step |^run folder|^done:|^note:|^warning:" "$OUT/bench.log" | tail -60; echo '```'
  echo "## digits_best, cut to fit"; echo '```'; grep -E "fastest variant|^status|error" "$OUT/digits.log" | tail -4; echo '```'
  echo "## torchrun, then resume"; echo '```'; grep -E "^status|resumed|error" "$OUT/torchrun.log" | tail -4; echo '```'
} > "$REPORT"
rm -f "$REPORT.rows"
rm -rf "$WORK"
cat "$REPORT"
exit $FAILED
