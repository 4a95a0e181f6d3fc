#!/usr/bin/env bash
# Build the documentation to docs/_build/html, warnings as errors.
#
# Usage: bash docs/build.sh [--no-gallery]     (after: .venv/bin/pip install -e ".[docs]")
#        PYTHON=/path/to/python bash docs/build.sh
#
# No venv needs to be active: the Python is $PYTHON if set, else the
# project's .venv/bin/python if that exists, else python3 (then python).
#
# By default runs every gallery example (examples/plot_*.py and
# examples/quickstart.py) and the figure code in the pages, one thread per
# library, then checks that each plot_* example left its figures in the HTML.
# --no-gallery skips running the gallery examples (the pages, docstrings and
# the figures drawn in the pages are still built and checked): the quick check.
# Exits non-zero on any warning, example error or missing figure.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x ../.venv/bin/python ]; then PYTHON=../.venv/bin/python
    elif command -v python3 >/dev/null 2>&1; then PYTHON=python3
    else PYTHON=python
    fi
fi
if ! "$PYTHON" -c "import sphinx, sphinx_gallery" >/dev/null 2>&1; then
    echo "docs/build.sh: $PYTHON cannot import sphinx and sphinx_gallery; install the" \
        "docs extra into it ($PYTHON -m pip install -e \".[docs]\" from the project's" \
        "root) or name another Python with PYTHON=/path/to/python bash docs/build.sh" >&2
    exit 2
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export MPLBACKEND=Agg
gallery=1
if [ "${1:-}" = "--no-gallery" ]; then gallery=0; fi
rm -rf _build/html _build/doctrees gen_modules auto_examples
"$PYTHON" -m sphinx -b html -W --keep-going -q -D plot_gallery="$gallery" . _build/html
if [ "$gallery" = 1 ]; then
    # Every example that draws must have left at least one figure in the HTML.
    missing=0
    for example in ../examples/plot_*.py; do
        name="$(basename "$example" .py)"
        if ! ls _build/html/_images/sphx_glr_"${name}"_*.png >/dev/null 2>&1; then
            echo "no figure rendered for examples/${name}.py" >&2
            missing=1
        fi
    done
    [ "$missing" = 0 ]
fi
echo "docs built: $(pwd)/_build/html/index.html"
