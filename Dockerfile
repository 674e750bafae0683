# The SageMaker serving image: onnxruntime on CPU, no torch. See docs/container.md.
#   make image      exports weights/model.onnx when it is missing or stale, then builds this
# By hand: python -m export --output weights/model.onnx, then a build that makes a Docker v2
# manifest (SageMaker refuses OCI ones): podman build --format docker, or
# docker buildx build --provenance=false --output type=docker.
ARG BASE_IMAGE=python:3.11-slim

# --- model: the ONNX file to bake in, checked first so that a build without one stops at once.
# The trailing * lets a missing file reach the check (a COPY of it alone would end in a bare
# "stat: no such file"); requirements-serve.txt is there so that the COPY always has a source.
FROM ${BASE_IMAGE} AS model
ARG MODEL_FILE=weights/model.onnx
COPY requirements-serve.txt ${MODEL_FILE}* /tmp/context/
RUN model="/tmp/context/${MODEL_FILE##*/}" \
    && if [ ! -f "$model" ]; then \
        echo "error: no ${MODEL_FILE} in the build context; run \`make image\` (it exports the bundled checkpoint and builds)" >&2; \
        exit 1; \
    fi \
    && mkdir -p /opt/model && mv "$model" /opt/model/model.onnx

# --- builder: a virtual environment with requirements-serve.txt and the runtime, less what
# serving never loads (container/install_venv.sh). `python -m container.image --runtime NAME`
# passes the RUNTIME_* arguments from the runtime's entry in serve/runtimes/__init__.py; these
# defaults are the default runtime's (onnxruntime), for a bare build.
FROM ${BASE_IMAGE} AS builder
ARG RUNTIME_REQUIREMENTS=requirements-serve.txt
ARG RUNTIME_REPLACES=
ARG RUNTIME_PRUNE="onnxruntime/tools onnxruntime/quantization onnxruntime/transformers"
COPY requirements-serve.txt ${RUNTIME_REQUIREMENTS} container/install_venv.sh /tmp/build/
RUN sh /tmp/build/install_venv.sh /tmp/build "$RUNTIME_REQUIREMENTS" "$RUNTIME_REPLACES" \
        "$RUNTIME_PRUNE" \
    && rm -rf /tmp/build
# checked-hash for serve/, so a source file mounted over it in development is still honoured.
COPY serve/ /opt/program/serve/
RUN /opt/venv/bin/python -m compileall -q --invalidation-mode checked-hash /opt/program/serve

# --- the image: the base, the environment, the server and the default model.
FROM ${BASE_IMAGE}
ARG RUNTIME=onnxruntime
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
# SageMaker multi-model endpoints: the server speaks the contract with SAGEMAKER_MULTI_MODEL=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
# ORT_DISABLE_TELEMETRY: onnxruntime 1.32 otherwise writes a device id and an event database
# under ~/.cache/Microsoft and tries to send them to mobile.events.data.microsoft.com.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/program \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    SERVE_RUNTIME=${RUNTIME}
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/program /opt/program
# The model served when /opt/ml/model holds none (MODEL_FILE, a path inside the build context).
COPY --from=model /opt/model /opt/model
# A fixed non-root user (docs/container.md "User and file system"). The files it runs are root's:
# it reads them, never writes them. It writes only in its private directory under /tmp
# (SERVE_TMPDIR), so the root file system can be read-only. -l: no lastlog entry for a high uid.
RUN groupadd --system --gid 10001 serve \
    && useradd --system -l --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin serve
WORKDIR /opt/program
EXPOSE 8080
USER 10001:10001
# Exec form: python is PID 1 and gets SIGTERM itself (serve installs a handler that drains).
ENTRYPOINT ["/opt/venv/bin/python", "-m", "serve"]
CMD ["serve"]
