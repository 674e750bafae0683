"""`python -m bench.multi_model`: many models on one server (issue 24, docs/multi-model.md).

The real server (`python -m serve`, SAGEMAKER_MULTI_MODEL=true) in its own process, driven over
127.0.0.1 as SageMaker's router drives it. For yolov7-tiny and yolov7 (full-size layer graphs,
random weights, exported by `python -m export`'s own code), FP32 and INT8, at 640:

- the server's resident memory (RSS, from /ping) grown by loading one model, and given back by
  unloading it (averaged over `--copies` copies loaded one after the other);
- the load's time (`POST /models` until its 200) and the first request after it against the next;
- requests per second at concurrency 4 with one model against round-robin over ten copies of it
  (yolov7-tiny FP32), the same server and pictures.

Writes a table to stdout and out/bench/multi_model.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import onnx

from bench import models
from demo.local_server import ROOT, free_port, stop, wait_for_ping
from demo.shapes import write_samples
from export.calibration import load_tensors
from export.quantize import QuantSettings, quantize
from serve.config import available_cpus
from tests.support.checkpoints import build_full_size, checkpoint_dict, save_checkpoint

PICTURES = [ROOT / "samples" / "bus.jpg", ROOT / "samples" / "zidane.jpg"]
MIB = 1024 * 1024


def export_variants(folder: Path, family: str, img_size: int, int8: bool) -> dict[str, Path]:
    """FP32 and INT8 (QDQ, export's own quantizer and settings, calibrated on generated shapes)
    exports of a random-weight full-size checkpoint. `python -m export --precision int8` refuses
    a model that finds nothing (its agreement check), which random weights do: speed and memory
    do not depend on the weights, so the quantizer is called directly and the FP32 metadata kept."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(
        checkpoint_dict(build_full_size(family), "stripped"), folder / f"{family}.pt"
    )
    fp32_path = models.export_onnx(checkpoint, folder / f"{family}-fp32.onnx", img_size)
    out = {"fp32": fp32_path}
    if int8:
        pictures = write_samples(folder / "calibration", 8, seed=3, sizes=[(640, 480)])
        tensors = load_tensors(sorted(pictures.parent.glob("*.png")), img_size, 1)
        fp32 = onnx.load(str(fp32_path))
        quantized, _ = quantize(fp32, tensors, QuantSettings())
        onnx.helper.set_model_props(quantized, {p.key: p.value for p in fp32.metadata_props})
        out["int8"] = folder / f"{family}-int8.onnx"
        onnx.save(quantized, str(out["int8"]))
    return out


class MultiServer:
    """`python -m serve` with SAGEMAKER_MULTI_MODEL=true and its models root."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.port = free_port()
        child_env = {
            **os.environ,
            "SAGEMAKER_MULTI_MODEL": "true",
            "SERVE_MODELS_ROOT": str(root),
            "SERVE_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serve"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_ping(f"http://127.0.0.1:{self.port}", self.process, 60)

    def call(
        self, method: str, path: str, body: bytes | None = None, kind: str = "application/json"
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": kind})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def rss_mib(self) -> float:
        return json.loads(self.call("GET", "/ping")[1])["memory"]["resident_mib"]

    def load(self, name: str, model: Path) -> float:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, folder / "model.onnx")
        body = json.dumps({"model_name": name, "url": str(folder)}).encode()
        started = time.perf_counter()
        status, answer = self.call("POST", "/models", body)
        assert status == 200, answer
        return time.perf_counter() - started

    def invoke(self, name: str, picture: bytes) -> float:
        started = time.perf_counter()
        status, answer = self.call("POST", f"/models/{name}/invoke", picture, "image/jpeg")
        assert status == 200, answer
        return time.perf_counter() - started

    def close(self) -> None:
        stop(self.process)


def memory_and_load(server: MultiServer, model: Path, label: str, copies: int) -> dict:
    picture = PICTURES[0].read_bytes()
    server.load("warm-up", model)  # the runtime's one-off costs (libraries, arenas) come first
    server.invoke("warm-up", picture)
    grown, freed, loads, firsts, seconds = [], [], [], [], []
    for i in range(copies):
        name = f"{label}-{i}"
        before = server.rss_mib()
        loads.append(server.load(name, model))
        firsts.append(server.invoke(name, picture))
        seconds.append(server.invoke(name, picture))
        loaded = server.rss_mib()
        grown.append(loaded - before)
        assert server.call("DELETE", f"/models/{name}")[0] == 200
        freed.append(loaded - server.rss_mib())
    server.call("DELETE", "/models/warm-up")

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 1)

    return {
        "model": label,
        "file_mib": round(model.stat().st_size / MIB, 1),
        "rss_per_model_mib": mean(grown),
        "rss_freed_by_unload_mib": mean(freed),
        "load_ms": mean([s * 1000 for s in loads]),
        "first_request_ms": mean([s * 1000 for s in firsts]),
        "next_request_ms": mean([s * 1000 for s in seconds]),
    }


def throughput(server: MultiServer, names: list[str], concurrency: int, duration: float) -> dict:
    """Closed loop: `concurrency` clients, each sending the next model of `names` in turn."""
    pictures = [p.read_bytes() for p in PICTURES]
    done: list[float] = []
    stop_at = time.perf_counter() + duration
    lock = threading.Lock()

    def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop_at:
            seconds = server.invoke(names[i % len(names)], pictures[i % len(pictures)])
            with lock:
                done.append(seconds)
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.sort()
    return {
        "models": len(names),
        "requests_per_s": round(len(done) / duration, 2),
        "p50_ms": round(done[len(done) // 2] * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multi_model", description=__doc__)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--copies", type=int, default=3, help="loads averaged per variant")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rps run")
    parser.add_argument("--families", default="yolov7-tiny,yolov7")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 exports")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "multi_model.json")
    args = parser.parse_args(argv)
    env = {"SERVE_QUEUE_DEADLINE": "60"}
    rows, rates = [], []
    with tempfile.TemporaryDirectory(prefix="bench-mm-") as tmp:
        folder = Path(tmp)
        exports = {
            family: export_variants(folder / family, family, args.img_size, not args.no_int8)
            for family in args.families.split(",")
        }
        server = MultiServer(folder / "root", env)
        try:
            for family, variants in exports.items():
                for precision, path in variants.items():
                    rows.append(memory_and_load(server, path, f"{family}-{precision}", args.copies))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            server.close()
        tiny = exports.get("yolov7-tiny", next(iter(exports.values())))["fp32"]
        server = MultiServer(folder / "root-rps", env)
        try:
            names = [f"m{i}" for i in range(10)]
            for name in names:
                server.load(name, tiny)
            rates.append(throughput(server, names[:1], 4, args.duration))
            rates.append(throughput(server, names, 4, args.duration))
            rates.append(throughput(server, names[:1], 4, args.duration))  # one again: drift
        finally:
            server.close()
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": available_cpus()},
        "img_size": args.img_size,
        "memory_and_load": rows,
        "round_robin": rates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    header = f"{'model':<22}{'file MiB':>9}{'RSS/model':>10}{'freed':>8}{'load ms':>9}"
    print(header + f"{'1st req ms':>11}{'next ms':>9}")
    for row in rows:
        print(
            f"{row['model']:<22}{row['file_mib']:>9}{row['rss_per_model_mib']:>10}"
            f"{row['rss_freed_by_unload_mib']:>8}{row['load_ms']:>9}"
            f"{row['first_request_ms']:>11}{row['next_request_ms']:>9}"
        )
    print(f"{'models (round robin)':<22}{'req/s':>9}{'p50 ms':>10}")
    for rate in rates:
        print(f"{rate['models']:<22}{rate['requests_per_s']:>9}{rate['p50_ms']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
