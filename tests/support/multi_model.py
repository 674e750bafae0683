"""Multi-model servers for the tests: a models root laid out as SageMaker unpacks it, the server's
environment, and the /models calls (serve/models_api.py).

SageMaker downloads `NAME.tar.gz` from the endpoint's S3 prefix, unpacks it in a folder of its own
under the models root and calls `POST /models {"model_name", "url": that folder}`; `model_folder`
makes such a folder from ONNX files, `load` makes that call.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.server import Response, ServerProcess


def multi_model_env(root: Path, **extra: str) -> dict[str, str]:
    """The variables SageMaker sets on a multi-model container, the models root in `root`."""
    return {"SAGEMAKER_MULTI_MODEL": "true", "SERVE_MODELS_ROOT": str(root), **extra}


def model_folder(root: Path, folder: str, *models: Path) -> Path:
    """root/folder holding copies of `models` (none: an empty folder), as SageMaker unpacks a
    model's tarball."""
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    for model in models:
        shutil.copyfile(model, target / model.name)
    return target


def load(server: ServerProcess, name: str, url: Path | str, timeout: float = 120.0) -> Response:
    body = json.dumps({"model_name": name, "url": str(url)}).encode()
    return server.request(
        "POST", "/models", body, {"Content-Type": "application/json"}, timeout=timeout
    )


def invoke(
    server: ServerProcess, name: str, body: bytes, content_type: str = "image/jpeg", **headers: str
) -> Response:
    """POST /models/NAME/invoke, with headers as `ServerProcess.invoke` takes them."""
    hdrs = {"Content-Type": content_type}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return server.request("POST", f"/models/{name}/invoke", body, hdrs)


def without_timings(answer: dict) -> dict:
    """A JSON answer less what differs from run to run (timings)."""
    return {key: value for key, value in answer.items() if key != "timing_ms"}
