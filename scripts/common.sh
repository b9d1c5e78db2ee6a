# Sourced by the protocol scripts (not run on its own): the interpreter, the run selection and the
# executor options every protocol shares, read from the environment the scripts document.
# shellcheck shell=bash
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"   # works without installing the package
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# Refused here, by the variable the user set (the sweep would name its own flag, or for a DATA a
# local run cannot read, fail in every job).
for var in SEEDS SHOTS; do
    for v in ${!var:-}; do
        if ! [[ "$v" =~ ^[0-9]+$ ]]; then
            echo "error: $var='${!var}': expected whole numbers separated by spaces, e.g. $var=\"1 2 3\"" >&2
            exit 2
        fi
    done
done
if [ -n "${DATA:-}" ] && [ ! -d "$DATA" ] && [[ "${EXECUTOR:-local}" == local || "${EXECUTOR:-local}" == gpus ]]; then
    echo "error: DATA=$DATA is not a folder; export DATA=<the folder that holds the dataset folders>," \
         "or unset DATA to run the built-in demo" >&2
    exit 2
fi

sel=(--output "${OUTPUT:-output}")
sel+=(--trainer ${TRAINERS:-MMRL MMRLpp ZeroshotCLIP})
[ -n "${SEEDS:-}" ] && sel+=(--seeds $SEEDS)
run=(--executor "${EXECUTOR:-local}")
[ -n "${GPUS:-}" ] && run+=(--gpus "$GPUS")
[ -n "${OPTS:-}" ] && run+=(--opts $OPTS)

# exit_unless_ran STATUS PROTOCOLS ARGS...: stop before the tables when the sweep only printed
# an sbatch script, or submitted jobs without --wait among ARGS (the script's own arguments).
exit_unless_ran() {
    local status=$1 protocols=$2
    shift 2
    case "${EXECUTOR:-local}" in
        print) exit "$status" ;;
        slurm) if [[ " $* " != *" --wait "* ]]; then
                   echo "jobs submitted; when they are done: $PY -m mmrl table --protocol $protocols ${sel[*]} (or pass --wait)"
                   exit "$status"
               fi ;;
    esac
}

# sweep_then_table PROTOCOL ARGS...: the sweep of PROTOCOL (ARGS: the script's own arguments), then
# its table from whatever finished; exits with the first failure's status.
sweep_then_table() {
    local protocol=$1 status table_status
    shift
    "$PY" -m mmrl sweep --protocol "$protocol" "${sel[@]}" "${run[@]}" "$@"
    status=$?
    exit_unless_ran "$status" "$protocol" "$@"
    echo
    "$PY" -m mmrl table --protocol "$protocol" "${sel[@]}" --allow-partial
    table_status=$?
    [ $status -eq 0 ] && status=$table_status
    exit $status
}
