"""YOLOv7 checkpoint -> verified ONNX, without the YOLOv7 repository."""

__version__ = "0.1.0"
