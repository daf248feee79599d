#!/usr/bin/env bash
# Executes every notebook in this folder top to bottom in a real Jupyter (nbconvert + nbclient)
# with the Deno kernelspec kept in ./jupyter, and fails on any cell error.
#
#   examples/notebooks/run.sh          execute into a temporary folder (CI)
#   examples/notebooks/run.sh --save   write the outputs back into the notebooks
#
# Prints one line per notebook, "notebook NAME: ok (Ns)" or "notebook NAME: FAILED", and exits
# non-zero if any failed. Needs Debian's jupyter-nbconvert, jupyter-client and python3-nbclient.
set -uo pipefail
cd "$(dirname "$0")"
export JUPYTER_PATH="$PWD/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
# The system Python's Jupyter, not whatever python3 comes first on PATH.
JUPYTER=${JUPYTER:-/usr/bin/jupyter}
command -v "$JUPYTER" >/dev/null || JUPYTER=jupyter
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for nb in *.ipynb; do
  name=${nb%.ipynb}
  start=$SECONDS
  if [ "${1:-}" = --save ]; then
    args=(--inplace)
  else
    args=(--output-dir "$out")
  fi
  if "$JUPYTER" nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
    --ExecutePreprocessor.kernel_name=deno "${args[@]}" "$nb" >"$out/$name.log" 2>&1; then
    echo "notebook $name: ok ($((SECONDS - start))s)"
  else
    echo "notebook $name: FAILED"
    grep -v -e MissingIDFieldWarning -e 'validate(nb)' "$out/$name.log" | tail -30
    status=1
  fi
done
exit $status
