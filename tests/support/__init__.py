"""What the test folders share, imported absolutely (`from tests.support.server import ...`).

- server.py: the one server harness (`ServerProcess`, `local_server`) and the one `ping`.
- models.py: small ONNX models built with onnx.helper (head, constant, flaky, slow).
- images.py: generated shape pictures and encoders (demo.shapes makes the labelled ones).
- reference.py: the official pre- and post-processing written again, independent of serve/.
- checkpoints.py: YOLOv7-family models from export's layers, saved as official checkpoints.
- programs.py: the programs the tests start, from the venv, never PATH.
- containers.py: the container tests' samples, request, port and tool checks.
- aws.py: moto's server (the `moto_url` and `moto` fixtures, a plugin) and deploy's helpers.
- async_sagemaker.py: SageMaker's part of asynchronous inference, played inside moto's server.
- multi_model.py: multi-model servers (a models root as SageMaker unpacks it, /models calls).
- multi_model_sagemaker.py: SageMaker's router of multi-model endpoints, played inside moto.
- video.py: clips of moving shapes with their true boxes (reliability/video_clips.py: the odd ones).
- reliability.py: the reliability servers' settings, a server's port, a soak run.
"""
