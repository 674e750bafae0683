"""`python -m deploy`: a YOLOv7 SageMaker endpoint's whole life, `push` to `down`, with boto3."""

__version__ = "0.1.0"
