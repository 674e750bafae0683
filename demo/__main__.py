"""`python -m demo` (what `make demo` runs): export, serve and detect, end to end, on 127.0.0.1.

1. exports the checkpoint (`WEIGHTS`, default the bundled shapes model) to ONNX;
2. starts the real server (`python -m serve`) on a free port of 127.0.0.1 and waits for /ping;
3. POSTs each image (`IMAGES`: files or folders; default samples/shapes) as raw bytes, prints the
   detections next to the true boxes where a truth.json is present, and saves the annotated
   picture the server draws (Accept: image/jpeg) to `OUT` (default out/demo);
4. stops the server with SIGTERM, as SageMaker does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from demo.evaluate import Tally, match
from demo.local_server import ROOT, local_server

BUNDLED = ROOT / "weights" / "shapes-yolov7-tiny.pt"
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}


def step(number: int, text: str) -> None:
    print(f"[{number}/4] {text}", flush=True)


def images_from(spec: str) -> list[Path]:
    found: list[Path] = []
    for part in spec.split(","):
        path = Path(part.strip())
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in CONTENT_TYPES)
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"demo: error: no image at {path}")
    if not found:
        raise SystemExit(f"demo: error: no images in {spec}")
    return found


def post(url: str, image: Path, accept: str) -> bytes:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=image.read_bytes(),
        method="POST",
        headers={"Content-Type": CONTENT_TYPES[image.suffix.lower()], "Accept": accept},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def show(name: str, detections: list[dict], truth: list[dict] | None) -> Tally | None:
    print(f"  {name}: {len(detections)} detections")
    for det in detections:
        box = ", ".join(f"{v:6.1f}" for v in det["box"])
        print(f"    found  {det['label']:<10} {det['score']:.2f}  [{box}]")
    if truth is None:
        return None
    for t in truth:
        box = ", ".join(f"{v:6.1f}" for v in t["box"])
        print(f"    truth  {t['label']:<10}       [{box}]")
    tally = match(detections, truth)
    print(
        f"    -> {tally.true_positives} right, {tally.false_positives} wrong, "
        f"{tally.false_negatives} missed"
    )
    return tally


def main() -> int:
    weights = Path(os.environ.get("WEIGHTS", str(BUNDLED)))
    bundled = weights.resolve() == BUNDLED.resolve()
    img_size = os.environ.get("IMG_SIZE", "320" if bundled else "640")
    images = images_from(os.environ.get("IMAGES", str(ROOT / "samples" / "shapes")))
    out = Path(os.environ.get("OUT", str(ROOT / "out" / "demo")))
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model.onnx"

    step(1, f"exporting {weights} at {img_size} px (takes a few seconds)")
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--weights",
            str(weights),
            "--img-size",
            img_size,
            "--output",
            str(model),
        ],
        cwd=ROOT,
    )
    if exported.returncode != 0:
        return exported.returncode

    step(2, "starting the server on 127.0.0.1 and waiting for /ping")
    with local_server(model) as server:
        print(f"  ready at {server.url} after {server.ready_after:.2f} s", flush=True)
        step(3, f"detecting on {len(images)} image(s)")
        total = Tally()
        scored = False
        for image in images:
            truth_file = image.parent / "truth.json"
            truth = (
                json.loads(truth_file.read_text()).get(image.name) if truth_file.is_file() else None
            )
            started = time.perf_counter()
            answer = json.loads(post(server.url, image, "application/json"))
            elapsed = (time.perf_counter() - started) * 1000
            tally = show(f"{image.name} ({elapsed:.0f} ms)", answer["detections"], truth)
            if tally is not None:
                total.add(tally)
                scored = True
            (out / f"{image.stem}.jpg").write_bytes(post(server.url, image, "image/jpeg"))
        step(4, "stopping the server (SIGTERM)")
    if scored:
        print(
            f"precision {total.precision:.2f}, recall {total.recall:.2f} at IoU 0.5 "
            f"({total.true_positives} of {total.true_positives + total.false_negatives} shapes)"
        )
    print(f"annotated pictures: {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
