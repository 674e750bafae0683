"""YOLOv7 ONNX inference server for Amazon SageMaker real-time endpoints (CPU).

Run with `python -m serve`; see docs/serving.md.
"""

__version__ = "0.1.0"
