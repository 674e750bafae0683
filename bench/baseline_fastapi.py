"""The usual design, for comparison: the PyTorch model behind FastAPI + uvicorn.

`python -m bench.baseline_fastapi --weights X.pt --port P` loads the checkpoint with our own
implementation (export.safe_load), fuses Conv+BN as the official `attempt_load` does, runs one
warm-up inference, then serves /ping and /invocations with one uvicorn worker. The pre- and
post-processing are serve's own (decode, letterbox, NMS, scale back), so only the runtime and the
web stack differ; `--rect-stride 32` letterboxes to each photo's smallest rectangle, as detect.py
does, for the like-for-like peer of our `--rect` configurations. Inference runs in Starlette's
thread pool (a blocking call inside `async def` would serialise requests; this is the fairer form
of the recipe). Benchmark-only: not in the image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from export.fuse import fuse_model
from export.safe_load import load_checkpoint
from serve.decode import decode_image
from serve.letterbox import letterbox, scale_boxes, to_tensor
from serve.nms import non_max_suppression

MAX_PIXELS = 50_000_000


class TorchDetector:
    def __init__(self, weights: Path, img_size: int, rect_stride: int | None = None):
        self.model = fuse_model(load_checkpoint(weights).model)
        self.names = [str(n) for n in self.model.names]
        self.size, self.stride = img_size, rect_stride
        grey = np.full((img_size, img_size, 3), 114, dtype=np.uint8)
        self.detect(grey)

    def detect(self, image: np.ndarray) -> dict:
        height, width = image.shape[:2]
        start = time.perf_counter()
        tensor = torch.from_numpy(to_tensor(letterbox(image, self.size, self.stride)))
        prepared = time.perf_counter()
        with torch.inference_mode():
            output = self.model(tensor).numpy()
        inferred = time.perf_counter()
        rows = non_max_suppression(output[0], conf=0.25, iou=0.45, max_det=300)
        boxes = scale_boxes(rows[:, :4], self.size, height, width, self.stride)
        done = time.perf_counter()
        detections = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(row[4]), 4),
                "class_id": int(row[5]),
                "label": self.names[int(row[5])] if int(row[5]) < len(self.names) else "",
            }
            for box, row in zip(boxes, rows, strict=True)
        ]
        return {
            "detections": detections,
            "image": {"width": width, "height": height},
            "timing_ms": {
                "preprocess": round((prepared - start) * 1000, 2),
                "inference": round((inferred - prepared) * 1000, 2),
                "postprocess": round((done - inferred) * 1000, 2),
            },
        }

    def detect_bytes(self, data: bytes) -> bytes:
        started = time.perf_counter()
        image = decode_image(data, MAX_PIXELS)
        decode_ms = (time.perf_counter() - started) * 1000
        answer = self.detect(image)
        answer["timing_ms"] = {"decode": round(decode_ms, 2), **answer["timing_ms"]}
        return json.dumps(answer).encode()


def create_app(detector: TorchDetector) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "ok", "torch_threads": torch.get_num_threads()}

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        data = await request.body()
        body = await run_in_threadpool(detector.detect_bytes, data)
        return Response(content=body, media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_fastapi", description=__doc__)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument(
        "--rect-stride",
        type=int,
        default=None,
        help="letterbox each photo to its smallest rectangle (detect.py's auto=True)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = create_app(TorchDetector(args.weights, args.img_size, args.rect_stride))
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
