#!/bin/sh
# The serving image's /opt/venv, made in the Dockerfile's builder stage: requirements-serve.txt
# with the image's runtime, less everything serving never loads. What to install and prune comes
# from the runtime's entry in serve/runtimes/__init__.py (the one place a runtime is declared),
# passed by `python -m container.image` as build arguments. Measured sizes: docs/container.md.
#
# usage: install_venv.sh DIR REQUIREMENTS REPLACES PRUNE
#   DIR           holds requirements-serve.txt and REQUIREMENTS
#   REQUIREMENTS  the runtime's requirement file: requirements-serve.txt for the default runtime,
#                 which it carries; another runtime's is installed with --no-deps beside
#                 requirements-serve.txt less the packages in REPLACES (the default runtime's)
#   PRUNE         paths under site-packages to remove (shell patterns, separated by spaces)
set -eu
dir="$1"
requirements="$2"
replaces="$3"
prune="$4"
pip() { /opt/venv/bin/pip --no-cache-dir --disable-pip-version-check "$@"; }

python3 -m venv /opt/venv
if [ "$requirements" = requirements-serve.txt ]; then
    pip install --no-compile -r "$dir/requirements-serve.txt"
else
    cp "$dir/requirements-serve.txt" "$dir/requirements-common.txt"
    for package in $replaces; do
        grep -v "^$package==" "$dir/requirements-common.txt" >"$dir/requirements-kept.txt" || true
        mv "$dir/requirements-kept.txt" "$dir/requirements-common.txt"
    done
    pip install --no-compile -r "$dir/requirements-common.txt"
    # --no-deps: the runtime's file pins all it needs (OpenVINO's openvino-telemetry serves only
    # its own tools).
    pip install --no-compile --no-deps -r "$dir/$requirements"
fi
# protobuf, flatbuffers and packaging serve only onnxruntime's offline tools, removed below.
pip uninstall --yes protobuf flatbuffers packaging setuptools pip 2>&1 | grep -v '^WARNING: Skipping' || true

site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
# Split PRUNE into words without expanding its patterns here; each expands under $site below.
set -f
# shellcheck disable=SC2086
set -- $prune
set +f
for path in "$@"; do
    # shellcheck disable=SC2086
    rm -rf "$site"/$path
done
find "$site" -depth -type d -name tests -exec rm -rf {} +
# .pyc compiled once here: the image never writes them at run time, and a cold start that
# compiles numpy and falcon from source is slower. unchecked-hash: installed packages never change.
/opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site"
