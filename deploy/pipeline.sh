#!/usr/bin/env bash
# The whole fredask pipeline as one scripted distributed job:
#   extract (models -> feature store) -> compare (all-pairs GFRE/GFRD/LFRE) -> cumulants.
#
#   sbatch --export=ALL,STRUCTURES="data/*.xyz" deploy/pipeline.sh    (SLURM)
#   qsub -v STRUCTURES="data/*.xyz" deploy/pipeline.sh                (PBS)
#   STRUCTURES="data/*.xyz" bash deploy/pipeline.sh                   (no batch system)
#
# The job starts one Dask scheduler on its first node and `dask worker` processes on
# every node of the allocation; each fredask step connects to them with
# --cluster $RUN_DIR/scheduler.json. Without a batch system, the workers run on this
# machine (a trial run). Settings: the environment variables below (defaults after
# :-); the resources: the #SBATCH / #PBS lines (each batch system ignores the other's).
# Submit from the directory that holds your data and the fredask checkout's .venv,
# or set VENV. Re-running the same job recomputes only missing feature chunks.
#
#SBATCH --job-name=fredask
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --mem=120G
#SBATCH --time=04:00:00
#SBATCH --partition=cpu
##SBATCH --account=PROJECT
#SBATCH --output=fredask-%j.out
#
#PBS -N fredask
#PBS -l select=2:ncpus=32:mem=120GB
#PBS -l walltime=04:00:00
#PBS -q workq
##PBS -A PROJECT
#PBS -j oe

set -euo pipefail
if [[ -n "${PBS_O_WORKDIR:-}" ]]; then cd "$PBS_O_WORKDIR"; fi

# --- settings -------------------------------------------------------------------------
STRUCTURES=${STRUCTURES:?set STRUCTURES to your structure files (ASE-readable, space-separated)}
MODELS=${MODELS:-"chgnet:0.3.0 sevenn:7net-0 sevenn:7net-l3i5"}
STEPS=${STEPS:-"extract compare cumulants"}   # e.g. "compare cumulants" after fredask ingest
WORK=${WORK:-fredask-run}                     # on a shared filesystem: all nodes read it
STORE=${STORE:-$WORK/store.zarr}
OUTPUT=${OUTPUT:-$WORK/results}
METRICS=${METRICS:-"gfre gfrd lfre"}
N_TEST=${N_TEST:-1000}                        # test atoms of the paper's stratified split
ORDER=${ORDER:-8}                             # highest cumulant order
WORKERS_PER_NODE=${WORKERS_PER_NODE:-8}       # Dask worker processes per node
THREADS=${THREADS:-4}                         # threads per worker (x workers = cores)
WORKER_MEMORY=${WORKER_MEMORY:-auto}          # per worker process; auto = node memory / workers
SCRATCH=${SCRATCH:-${TMPDIR:-/tmp}}           # node-local disk for spilling
INTERFACE=${INTERFACE:-}                      # network for Dask traffic, e.g. ib0 (ip addr)
VENV=${VENV:-$PWD/.venv}                      # the environment fredask is installed in
JOB_ID=${SLURM_JOB_ID:-${PBS_JOBID:-local-$$}}
RUN_DIR=${RUN_DIR:-$WORK/dask-$JOB_ID}        # scheduler file and logs (shared filesystem)

# --- the Dask cluster of this job -----------------------------------------------------
if [[ -f "$VENV/bin/activate" ]]; then source "$VENV/bin/activate"; fi
mkdir -p "$RUN_DIR" "$OUTPUT"
SCHEDULER_FILE=$RUN_DIR/scheduler.json
rm -f "$SCHEDULER_FILE"
NET=()
if [[ -n "$INTERFACE" ]]; then NET=(--interface "$INTERFACE"); fi

PIDS=()
stop_cluster() {
    # the scheduler closes its workers as it shuts down; then stop what is left
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_cluster EXIT

python -m distributed.cli.dask_scheduler --scheduler-file "$SCHEDULER_FILE" ${NET[@]+"${NET[@]}"} \
    --port 0 --dashboard-address :8787 >"$RUN_DIR/scheduler.log" 2>&1 &
PIDS=("$!")
for _ in $(seq 600); do [[ -s "$SCHEDULER_FILE" ]] && break; sleep 0.1; done
[[ -s "$SCHEDULER_FILE" ]] || { cat "$RUN_DIR/scheduler.log"; exit 1; }

WORKER=(python -m distributed.cli.dask_worker --scheduler-file "$SCHEDULER_FILE"
    --nworkers "$WORKERS_PER_NODE" --nthreads "$THREADS" --memory-limit "$WORKER_MEMORY"
    --local-directory "$SCRATCH" --death-timeout 60 ${NET[@]+"${NET[@]}"})
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    NODES=$SLURM_JOB_NUM_NODES
    srun --nodes="$NODES" --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
        "${WORKER[@]}" >"$RUN_DIR/workers.log" 2>&1 &
elif [[ -n "${PBS_NODEFILE:-}" ]]; then
    NODES=$(sort -u "$PBS_NODEFILE" | wc -l)
    # pbsdsh runs the command once per node (-u) with no login shell: set up the environment
    printf -v command '%q ' "${WORKER[@]}"
    pbsdsh -u -- /bin/bash -c "cd $(printf %q "$PWD") && source $(printf %q "$VENV")/bin/activate \
        && exec $command" >"$RUN_DIR/workers.log" 2>&1 &
else
    NODES=1
    "${WORKER[@]}" >"$RUN_DIR/workers.log" 2>&1 &
fi
PIDS+=("$!")
fredask cluster "$SCHEDULER_FILE" --wait $((NODES * WORKERS_PER_NODE)) --timeout 600

# --- the pipeline ---------------------------------------------------------------------
CLUSTER=(--cluster "$SCHEDULER_FILE")
structures=($STRUCTURES)   # split on spaces and expand globs: STRUCTURES="data/*.xyz"
models=()
for model in $MODELS; do models+=(--model "$model"); done
read -r -a metrics <<<"$METRICS"

for step in $STEPS; do
    echo "=== $step $(date -Is)"
    case $step in
        extract)
            fredask extract "${structures[@]}" "${models[@]}" --store "$STORE" --skip-errors \
                "${CLUSTER[@]}" ;;
        compare)
            fredask compare "$STORE" --metric "${metrics[@]}" --split paper --n-test "$N_TEST" \
                --precision float64 --output "$OUTPUT" "${CLUSTER[@]}" ;;
        cumulants)
            fredask cumulants "$STORE" --order "$ORDER" "${CLUSTER[@]}" \
                | tee "$OUTPUT/cumulants.txt" ;;
        *)
            echo "unknown step $step (use extract, compare, cumulants)" >&2; exit 2 ;;
    esac
done
echo "=== done $(date -Is): results in $OUTPUT, Dask logs in $RUN_DIR"
