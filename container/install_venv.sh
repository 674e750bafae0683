#!/bin/sh
# The serving image's /opt/venv, made in the Dockerfile's builder stage: requirements-serve.txt
# with onnxruntime (RUNTIME=onnxruntime) or OpenVINO (RUNTIME=openvino) as the runtime, less
# everything serving never loads. Measured sizes: docs/container.md.
#
# usage: install_venv.sh RUNTIME DIR   (DIR holds requirements-serve.txt, requirements-openvino.txt)
set -eu
runtime="$1"
dir="$2"
pip() { /opt/venv/bin/pip --no-cache-dir --disable-pip-version-check "$@"; }

python3 -m venv /opt/venv
case "$runtime" in
onnxruntime)
    pip install --no-compile -r "$dir/requirements-serve.txt"
    ;;
openvino)
    grep -v '^onnxruntime==' "$dir/requirements-serve.txt" >"$dir/requirements-common.txt"
    pip install --no-compile -r "$dir/requirements-common.txt"
    # --no-deps: openvino-telemetry serves only OpenVINO's own tools.
    pip install --no-compile --no-deps -r "$dir/requirements-openvino.txt"
    ;;
*)
    echo "error: RUNTIME must be onnxruntime or openvino, not '$runtime'" >&2
    exit 1
    ;;
esac
# protobuf, flatbuffers and packaging serve only onnxruntime's offline tools, removed below.
pip uninstall --yes protobuf flatbuffers packaging setuptools pip 2>&1 | grep -v '^WARNING: Skipping' || true

site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
if [ "$runtime" = onnxruntime ]; then
    rm -rf "$site"/onnxruntime/tools "$site"/onnxruntime/quantization "$site"/onnxruntime/transformers
else
    # Only the CPU plugin and the ONNX (and IR) frontends run here: no GPU/NPU/AUTO/HETERO
    # plugins, no GPU kernel cache, no TensorFlow/PyTorch/Paddle/JAX/GGUF frontends, no C API,
    # headers or tools (180 -> 98 MB, measured).
    ov="$site/openvino"
    rm -rf "$ov"/libs/libopenvino_intel_gpu_plugin.so "$ov"/libs/libopenvino_intel_npu_plugin.so \
        "$ov"/libs/cache.json "$ov"/libs/libopenvino_auto_plugin.so \
        "$ov"/libs/libopenvino_hetero_plugin.so "$ov"/libs/libopenvino_auto_batch_plugin.so \
        "$ov"/libs/libopenvino_c.so* "$ov"/libs/tbb.pc "$ov"/include "$ov"/tools \
        "$ov"/frontend/jax "$ov"/frontend/paddle "$ov"/frontend/pytorch "$ov"/frontend/tensorflow
    for frontend in tensorflow pytorch paddle gguf tensorflow_lite jax; do
        rm -f "$ov"/libs/libopenvino_"$frontend"_frontend.so*
    done
fi
find "$site" -depth -type d -name tests -exec rm -rf {} +
# .pyc compiled once here: the image never writes them at run time, and a cold start that
# compiles numpy and falcon from source is slower. unchecked-hash: installed packages never change.
/opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site"
