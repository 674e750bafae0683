"""YOLOv7 ONNX inference server for Amazon SageMaker real-time endpoints (CPU).

Run with `python -m serve`; see docs/serving.md.
"""

from serve import config as _config  # noqa: F401  (first: it disables onnxruntime's telemetry)

__version__ = "0.1.0"
