"""`python -m bench`: our server beside bare onnxruntime and PyTorch + FastAPI (issue 6).

Benchmark-only dependencies are in requirements-bench.txt and never go into the serving image.
"""
