#!/usr/bin/env bash
# The long, resumable CPU training run of the bundled model (issue 18), outside the repository.
#   scripts/long_run.sh start    snapshot the code (once), start/resume training niced in the background
#   scripts/long_run.sh status   last log lines, steps done, CPU-hours spent over all sessions
#   scripts/long_run.sh stop     SIGTERM: the loop saves a checkpoint after the current step and exits
#   scripts/long_run.sh recode   move a stopped run's code snapshot to the repository's HEAD (a speed-up, a fix);
#                                logged with the latest checkpoint's step: from there the run is not bit-identical
#                                to one that kept the old code (rounding, or the fix itself)
#   scripts/long_run.sh export   write the artifact of the best checkpoint (by validation; LIC_EXPORT_WHICH=last:
#                                the latest) to $RUN/artifact-export
#   scripts/long_run.sh seed     export the latest checkpoint (a resume point is the run's progress, not its best
#                                validation), then save its compact seed into the repo (experiments/seeds/<name>,
#                                scripts/run_seed.py): commit it, and a new machine's `start` resumes from it
# Environment: LIC_RUNS (default ~/lic_runs), LIC_RUN_NAME (default bundled-vr), LIC_RUN_CONFIG
# (default configs/bundled_vr.py), LIC_JAX_SHARED (default <repo>/../shared), LIC_INIT (first start only:
# a model directory to start from, e.g. scripts/make_bundled_vr_init.py's graft of the bundled default).
# The code is cloned once into $LIC_RUNS/code-<name> at the current commit, so a resumed run always
# runs the code it started with (exact resume), whatever happens to the working tree meanwhile.
# CPU time is sampled every minute from /proc into $RUN/cpu_ledger.tsv (one line per process).
# LIC_RUN_NICE (default 19) is the run's nice value, and also its autogroup's: Linux with
# sched_autogroup_enabled=1 (this machine) shares the CPU between sessions first and applies nice values
# only inside a session, so a run niced in the caller's terminal still took an equal share against every
# other terminal's jobs. The run gets a session of its own (setsid) and that session's nice.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${LIC_RUNS:-$HOME/lic_runs}
NAME=${LIC_RUN_NAME:-bundled-vr}
CONFIG=${LIC_RUN_CONFIG:-configs/bundled_vr.py}
RUN=$RUNS/$NAME
CODE=$RUNS/code-$NAME
SEED=$REPO/experiments/seeds/$NAME
PY=$REPO/.venv/bin/python
NICE=${LIC_RUN_NICE:-19}
export LIC_JAX_SHARED=${LIC_JAX_SHARED:-$(cd "$REPO/.." && pwd)/shared}
mkdir -p "$RUN"

cpu_hours() {
  [[ -f $RUN/cpu_ledger.tsv ]] || { echo 0; return; }
  awk -F'\t' '{s[$1]=$3} END {t=0; for (k in s) t+=s[k]; printf "%.2f\n", t/3600}' "$RUN/cpu_ledger.tsv"
}

case ${1:-status} in
  start)
    # (a zombie — exited, not yet reaped — still answers kill -0: look at its state too)
    if [[ -f $RUN/pid ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null \
       && [[ $(ps -o stat= -p "$(cat "$RUN/pid")" 2>/dev/null) != Z* ]]; then
      echo "already running (pid $(cat "$RUN/pid"))"; exit 0
    fi
    if [[ ! -d $CODE ]]; then
      git clone -q "$REPO" "$CODE"
      git -C "$CODE" log -1 --format='code snapshot %H %s' | tee -a "$RUN/run.log"
    fi
    # the run's start point (LIC_INIT, configs/bundled_vr.py) is fixed at the first start; with no
    # LIC_INIT and no run directory yet (a new machine), the committed seed is the start point
    if [[ ! -f $RUN/init_from && -z ${LIC_INIT:-} && -f $SEED/seed.npz ]]; then
      "$PY" "$REPO/scripts/run_seed.py" restore "$SEED" "$RUNS/$NAME-seed"
      LIC_INIT=$RUNS/$NAME-seed
      echo "$(date -u +%FT%TZ) new run directory: starting from the seed $SEED ($(sed -n 's/.*"note": "\(.*\)",*$/\1/p' "$SEED/seed.json"))" >> "$RUN/run.log"
    fi
    [[ -f $RUN/init_from ]] || echo "${LIC_INIT:-}" > "$RUN/init_from"
    export LIC_INIT; LIC_INIT=$(cat "$RUN/init_from")
    cd "$CODE"
    echo "$(date -u +%FT%TZ) start/resume (init: ${LIC_INIT:-initialiser}) on $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')" >> "$RUN/run.log"
    JAX_PLATFORMS=cpu PYTHONPATH=$CODE JAX_COMPILATION_CACHE_DIR=$RUNS/jit_cache \
      nohup setsid nice -n "$NICE" "$PY" train.py --config "$CONFIG" --workdir "$RUN" >> "$RUN/run.log" 2>&1 &
    pid=$!
    echo $pid > "$RUN/pid"
    # the new session's autogroup: its nice is what orders it against other sessions (no-op without autogroup)
    # (only once setsid has run: before, /proc/$pid/autogroup is the caller's session's)
    for _ in $(seq 50); do
      if [[ $(ps -o sid= -p $pid 2>/dev/null | tr -d ' ') == "$pid" ]]; then
        [[ -w /proc/$pid/autogroup ]] && echo "$NICE" > /proc/$pid/autogroup 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    # CPU-time ledger: utime+stime (+ waited-for children) of the training process, every minute
    ( tck=$(getconf CLK_TCK); started=$(date -u +%FT%TZ)
      while kill -0 $pid 2>/dev/null; do
        read -r -a f < /proc/$pid/stat || break
        printf '%s\t%s\t%s\n' "$pid@$started" "$(date -u +%FT%TZ)" $(( (f[13]+f[14]+f[15]+f[16]) / tck )) >> "$RUN/cpu_ledger.tsv"
        sleep 60
      done ) > /dev/null 2>&1 &
    echo "started pid $pid: $RUN (code $CODE)"
    ;;
  status)
    tail -n 5 "$RUN/run.log" 2>/dev/null || true
    [[ -f $RUN/metrics.jsonl ]] && tail -n 1 "$RUN/metrics.jsonl"
    if [[ -f $RUN/pid ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then echo "running (pid $(cat "$RUN/pid"))"; else echo "not running"; fi
    echo "CPU-hours so far: $(cpu_hours)"
    ;;
  stop)
    [[ -f $RUN/pid ]] && kill -TERM "$(cat "$RUN/pid")" 2>/dev/null && echo "SIGTERM sent" || echo "not running"
    ;;
  recode)
    if [[ -f $RUN/pid ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null \
       && [[ $(ps -o stat= -p "$(cat "$RUN/pid")" 2>/dev/null) != Z* ]]; then
      echo "$0: $NAME is running (pid $(cat "$RUN/pid")): stop it first" >&2; exit 2
    fi
    [[ -d $CODE ]] || { echo "$0: no code snapshot $CODE (start makes one)" >&2; exit 2; }
    old=$(git -C "$CODE" rev-parse HEAD)
    git -C "$CODE" fetch -q "$REPO" HEAD && git -C "$CODE" checkout -q --detach FETCH_HEAD
    new=$(git -C "$CODE" rev-parse HEAD)
    last=$(ls "$RUN/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1)
    echo "$(date -u +%FT%TZ) code snapshot ${old:0:7} -> ${new:0:7} at checkpoint ${last:-none}: $(git -C "$CODE" log -1 --format=%s | cut -c1-160)" \
      | tee -a "$RUN/run.log"
    ;;
  export)
    cd "$CODE"
    PYTHONPATH=$CODE JAX_PLATFORMS=cpu JAX_COMPILATION_CACHE_DIR=$RUNS/jit_cache "$PY" train.py --config "$CONFIG" \
      --workdir "$RUN" --mode=export \
      --export_dir="$RUN/artifact-export" --config.export.which="${LIC_EXPORT_WHICH:-best}"
    ;;
  seed)
    LIC_EXPORT_WHICH=last "$0" export
    step=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metadata'].get('training', {}).get('exported_step', '?'))" \
      "$RUN/artifact-export/config.json" 2>/dev/null || echo '?')
    "$PY" "$REPO/scripts/run_seed.py" save "$RUN/artifact-export" "$SEED" \
      --note "$NAME after step $step of $(cat "$RUN/init_from" 2>/dev/null || echo '?'); $(cpu_hours) CPU-h on this run directory; $(date -u +%F)"
    ;;
  *) echo "usage: $0 start|status|stop|recode|export|seed" >&2; exit 2 ;;
esac
