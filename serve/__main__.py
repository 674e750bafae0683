"""`python -m serve [serve]`: the container's entry point (SageMaker runs the image with `serve`).

Start-up order: settings, model file (fail fast), listen (SageMaker wants connections accepted
within 250 ms, so only light modules are imported before), then the model starts loading and
warming up in a background thread while the app is built and /ping answers 503. Any start-up
failure is one log line and a non-zero exit. SIGTERM/SIGINT drain and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from serve.config import ConfigError, Settings, available_cpus, default_inference_slots
from serve.errors import ModelError, one_line
from serve.locate import is_ir, locate_model, model_bytes
from serve.logs import setup_logging
from serve.memory import keep_freed_memory, limit_arenas
from serve.runtimes.precision import Choice, choose, cpu_flags, for_ir
from serve.scratch import Scratch, ScratchError
from serve.server import Server

log = logging.getLogger("serve")

EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_LISTEN = 4
SETTLE_SECONDS = 5.0  # longest wait at exit for background compiles and leftover inferences


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve",
        description="YOLOv7 ONNX inference server for SageMaker, configured by environment "
        "variables (see docs/serving.md).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve"],
        help="SageMaker starts the container with 'serve' (the default)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # As PID 1 in a container, a signal without a handler is ignored: until the draining handler
    # below is installed there is nothing to drain, so SIGTERM simply ends the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # Before waitress's threads exist: at most 4 malloc arenas, and what a request frees is kept
    # for the next one, so RSS stays at its high-water mark instead of rising and falling with
    # each request's buffers (serve/memory.py)
    limit_arenas()
    keep_freed_memory()
    _parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        setup_logging(logging.INFO)
        log.error(f"cannot start: {exc}")
        return EXIT_CONFIG
    setup_logging(settings.log_level)
    try:  # before listening: a runtime that is not installed or a precision the CPU lacks
        choice = choose(settings.runtime, settings.precision, cpu_flags())
    except ConfigError as exc:
        log.error(f"cannot start: {exc}")
        return EXIT_CONFIG

    try:  # before the heavy imports: they read where temporary files go once
        scratch = Scratch.create(settings.tmpdir)
    except ScratchError as exc:
        log.error(f"cannot start: {exc}")
        return EXIT_CONFIG
    try:
        return _serve(settings, choice, scratch)
    finally:
        scratch.remove()


def _serve(settings: Settings, choice: Choice, scratch: Scratch) -> int:
    try:  # a multi-model server starts with none: SageMaker loads them (serve/multi_model.py)
        model_path = (
            None
            if settings.multi_model
            else locate_model(settings.model_path, settings.model_dir, settings.baked_model_path)
        )
    except ModelError as exc:
        log.error(f"cannot start: {exc}")
        return EXIT_MODEL
    if model_path is not None and is_ir(model_path):
        try:  # only OpenVINO reads IR: it runs it unless another runtime was asked for
            choice = for_ir(choice, settings.runtime_asked, settings.precision, cpu_flags())
        except ConfigError as exc:
            log.error(f"cannot start: {exc}")
            return EXIT_CONFIG

    try:
        server = Server(
            host=settings.host,
            port=settings.port,
            threads=settings.threads,
            max_request_body_size=max(4 * settings.max_body_bytes, settings.max_video_bytes),
            in_memory_body_size=4 * settings.max_body_bytes,
            grace_seconds=settings.grace_seconds,
            max_connections=settings.max_connections,
        )
    except OSError as exc:
        log.error(
            f"cannot start: cannot listen on {settings.host}:{settings.port}: {one_line(exc)}"
        )
        return EXIT_LISTEN
    log.info(
        "listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": server.port,
                "threads": settings.threads,
                "max_connections": server.max_connections,
                "queue_deadline_s": settings.queue_deadline,
                "runtime": choice.runtime,
                "ort_intra_op_threads": settings.intra_op_threads,
                "model_path": str(model_path) if model_path else "(multi-model)",
            }
        },
    )

    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        server.stop(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if model_path is None:
        return _serve_many(settings, choice, scratch, server, received)

    # The heavy imports (onnxruntime or OpenVINO, OpenCV, numpy) come after the socket listens.
    # The model starts loading before the web app is built: the runtime's compile releases the
    # GIL, so building the app overlaps it (the imports themselves mostly take turns).
    from serve.detector import Detector

    slots = settings.inference_slots or default_inference_slots(
        model_bytes(model_path), settings.intra_op_threads, available_cpus()
    )
    detector = Detector(
        model_path,
        settings.intra_op_threads,
        settings.inter_op_threads,
        slots,
        runtime=choice.runtime,
        precision=choice.precision,
        static_shapes=settings.static_shapes,
    )

    def load() -> None:
        try:
            detector.load()
        except ModelError as exc:
            log.error(f"cannot start: {exc}")
            server.stop(EXIT_MODEL)
            return
        except Exception as exc:  # anything else is just as fatal, and still one line
            log.error(f"cannot start: loading {model_path} failed: {one_line(exc)}")
            server.stop(EXIT_MODEL)
            return
        info = detector.model_info
        fields = {
            "model": info.name,
            "path": str(model_path),
            "layout": info.layout,
            "img_size": info.img_size,
            "classes": len(info.names),
            "runtime": detector.runtime,
            "precision": detector.precision,
            "float_precision": detector.float_precision,
            "precision_why": choice.why,
        }
        if detector.compiling:
            fields["compiling"] = detector.compiling
        log.info("ready", extra={"fields": fields})

    loader = threading.Thread(target=load, name="model-loader", daemon=True)
    loader.start()
    try:
        from serve.app import create_app

        app = create_app(detector, settings, scratch)
    except Exception as exc:  # a broken install: still one line, and no exit under the loader
        log.error(f"cannot start: building the app failed: {one_line(exc)}")
        scratch.remove()  # os._exit skips main's finally
        sys.stdout.flush()
        os._exit(EXIT_CONFIG)
    code = server.serve(app)
    if received:
        log.info("stopped", extra={"fields": {"signal": signal.Signals(received[0]).name}})
    # Stopped while loading, while the runtime still compiles in the background, or with an
    # inference left over after the grace period: exiting through the interpreter's shutdown would
    # tear the runtime down under that thread (OpenVINO aborts the process), so leave at once,
    # after at most SETTLE_SECONDS for those to end.
    if loader.is_alive() or not detector.settle(SETTLE_SECONDS):
        scratch.remove()  # os._exit skips main's finally
        sys.stdout.flush()
        os._exit(code)
    return code


def _serve_many(
    settings: Settings, choice: Choice, scratch: Scratch, server: Server, received: list[int]
) -> int:
    """SAGEMAKER_MULTI_MODEL=true: /ping is 200 at once and SageMaker loads models through
    POST /models (serve/models_api.py)."""
    from serve.models_api import create_multi_model_app
    from serve.multi_model import Budget, memory_limit, resident_bytes

    budget = Budget.from_settings(settings, resident_bytes(), memory_limit())
    app, registry = create_multi_model_app(settings, choice, budget, scratch)
    log.info(
        "ready",
        extra={
            "fields": {
                "mode": "multi-model",
                "models_root": settings.models_root,
                "model_memory_mib": budget.models_bytes // (1024 * 1024),
                "inference_slots": registry.slots,
                "runtime": choice.runtime,
            }
        },
    )
    code = server.serve(app)
    if received:
        log.info("stopped", extra={"fields": {"signal": signal.Signals(received[0]).name}})
    if not registry.settle(SETTLE_SECONDS):  # as in _serve: never tear a runtime down under work
        scratch.remove()
        sys.stdout.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
