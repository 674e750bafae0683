"""SageMaker's multi-model contract over HTTP (serve/models_api.py, serve/multi_model.py), on small
head models of different classes and sizes (tests.support.models): load, list, describe, invoke,
unload; 409, 507, 404 and every bad input a JSON 4xx while the loaded models keep serving; the
invocations of loaded models going on while another model loads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serve.config import Settings
from serve.multi_model import (
    MAX_NAME,
    Budget,
    Registry,
    check_name,
    estimate_footprint,
    memory_limit,
)
from serve.options import Options
from serve.runtimes.precision import Choice
from tests.support.images import encode, shapes_image
from tests.support.models import head_model, slow_model
from tests.support.multi_model import (
    invoke,
    load,
    model_folder,
    multi_model_env,
    without_timings,
)

PICTURE = encode(shapes_image(320, 240, 3), ".jpg")
UNLIMITED = Budget(1 << 40, None)


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    """Three head models: different sizes, class lists and weights."""
    folder = tmp_path_factory.mktemp("heads")
    return {
        "a": head_model(folder / "a.onnx", size=128, seed=0),
        "b": head_model(folder / "b.onnx", size=64, names=["cat", "dog", "cow", "hen"], seed=1),
        "c": head_model(folder / "c.onnx", size=96, names=["one", "two"], seed=2),
    }


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def _error(resp, status: int, *words: str) -> dict:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == status and body["error"]
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body


def test_ping_is_200_with_no_model_loaded_and_nothing_is_listed(start_server, root):
    server = start_server(multi_model_env(root))
    ping = server.request("GET", "/ping").json()
    assert ping["mode"] == "multi-model" and ping["models"] == 0
    assert server.request("GET", "/models").json() == {"models": []}
    _error(server.request("POST", "/invocations", PICTURE), 404)


def test_load_describe_invoke_unload(start_server, root, heads):
    server = start_server(multi_model_env(root))
    url = model_folder(root, "b-1", heads["b"])
    loaded = load(server, "b", url)
    assert loaded.status == 200, loaded.body
    assert loaded.json()["status"] == "loaded"
    _error(load(server, "b", url), 409, "already loaded")

    described = server.request("GET", "/models/b").json()
    assert described["modelName"] == "b" and described["modelUrl"] == str(url)
    assert described["classes"] == ["cat", "dog", "cow", "hen"]
    assert described["img_size"] == 64 and described["task"] == "detect"
    assert described["precision"] == "fp32" and described["layout"] == "raw"
    assert described["file_bytes"] == heads["b"].stat().st_size
    assert described["footprint_bytes"] > described["file_bytes"]

    answer = invoke(server, "b", PICTURE)
    assert answer.status == 200, answer.body
    labels = {d["label"] for d in answer.json()["detections"]}
    assert labels and labels <= {"cat", "dog", "cow", "hen"}
    assert server.request("GET", "/models/b").json()["invocations"] == 1
    assert server.request("GET", "/ping").json()["models"] == 1

    unloaded = server.request("DELETE", "/models/b")
    assert unloaded.status == 200 and unloaded.json()["modelName"] == "b"
    _error(server.request("DELETE", "/models/b"), 404, "no model 'b'")
    _error(invoke(server, "b", PICTURE), 404, "no model 'b'")
    _error(server.request("GET", "/models/b"), 404)
    assert load(server, "b", url).status == 200  # loads again after an unload


def test_models_are_listed_in_pages(start_server, root, heads):
    server = start_server(multi_model_env(root))
    url = model_folder(root, "a", heads["a"])
    names = [f"m{i}" for i in range(5)]
    for name in names:
        assert load(server, name, url).status == 200
    seen, token, pages = [], None, 0
    while True:
        query = "/models?limit=2" + (f"&next_page_token={token}" if token else "")
        page = server.request("GET", query).json()
        pages += 1
        assert len(page["models"]) <= 2
        seen += [m["modelName"] for m in page["models"]]
        assert all(m["modelUrl"] == str(url) for m in page["models"])
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == names and pages == 3
    assert len(server.request("GET", "/models").json()["models"]) == 5
    _error(server.request("GET", "/models?next_page_token=%25%25"), 400, "next_page_token")
    _error(server.request("GET", "/models?limit=0"), 400)


def test_each_model_answers_with_its_own_classes_and_size(start_server, root, heads):
    server = start_server(multi_model_env(root))
    for name, path in heads.items():
        assert load(server, name, model_folder(root, name, path)).status == 200
    for name, size in (("a", 128), ("b", 64), ("c", 96)):
        assert server.request("GET", f"/models/{name}").json()["img_size"] == size
    labels = {
        name: {d["label"] for d in invoke(server, name, PICTURE).json()["detections"]}
        for name in heads
    }
    assert labels["a"] <= {"circle", "square", "triangle"}
    assert labels["b"] <= {"cat", "dog", "cow", "hen"}
    assert labels["c"] <= {"one", "two"}


def test_a_load_past_the_memory_budget_gets_507_until_a_model_is_unloaded(
    start_server, root, heads
):
    budget = 5 * estimate_footprint(heads["a"].stat().st_size) // 2 // 2**20  # two fit, not three
    server = start_server(multi_model_env(root, SERVE_MODEL_MEMORY_MB=str(budget)))
    url = model_folder(root, "a", heads["a"])
    assert load(server, "first", url).status == 200
    assert load(server, "second", url).status == 200
    _error(load(server, "third", url), 507, "third", "MiB")
    assert server.request("GET", "/ping").json()["models"] == 2
    assert invoke(server, "first", PICTURE).status == 200  # the loaded ones keep serving
    assert server.request("DELETE", "/models/second").status == 200
    assert load(server, "third", url).status == 200
    assert invoke(server, "third", PICTURE).status == 200


def test_a_load_that_would_pass_the_memory_limit_gets_507(start_server, root, heads):
    ram_mib = memory_limit("/nonexistent") // 2**20  # no cgroup there: the RAM
    # The limit less the headroom leaves 64 MiB: less than the server itself holds.
    env = {"SERVE_MEMORY_HEADROOM_MB": str(ram_mib - 64), "SERVE_MODEL_MEMORY_MB": "100000"}
    server = start_server(multi_model_env(root, **env))
    _error(load(server, "a", model_folder(root, "a", heads["a"])), 507, "the server holds")
    assert server.request("GET", "/ping").json()["models"] == 0


def _bad_loads(root: Path, heads: dict[str, Path], outside: Path) -> list[tuple[object, int, str]]:
    """(POST /models body, status, word of the error) for each way a load request can be bad."""
    empty = model_folder(root, "empty")
    two = model_folder(root, "two", heads["a"], heads["b"])
    corrupt = model_folder(root, "corrupt")
    (corrupt / "model.onnx").write_bytes(b"\x08\x07not a protobuf" * 100)
    truncated = model_folder(root, "truncated")
    (truncated / "model.onnx").write_bytes(heads["a"].read_bytes()[:2000])
    no_meta = model_folder(root, "no-meta")
    head_model(no_meta / "model.onnx", size=64, metadata={"names": "not json"})
    good = str(model_folder(root, "good", heads["a"]))
    escape = root / "escape"
    escape.symlink_to(outside, target_is_directory=True)
    ir = model_folder(root, "ir")  # refused before it is read: its content does not matter
    (ir / "model.xml").write_text("<net/>")
    (ir / "model.bin").write_bytes(b"\0" * 64)
    ir_alone = model_folder(root, "ir-alone")
    (ir_alone / "model.xml").write_text("<net/>")
    linked = model_folder(root, "linked")
    (linked / "model.onnx").symlink_to(next(outside.glob("*.onnx")))
    return [
        ({"model_name": "x", "url": str(empty)}, 400, "no .onnx"),
        ({"model_name": "x", "url": str(two)}, 400, "2 models (.onnx or .xml)"),
        ({"model_name": "x", "url": str(ir)}, 400, "SERVE_RUNTIME=openvino"),
        ({"model_name": "x", "url": str(ir_alone)}, 400, "model.bin are not beside it"),
        ({"model_name": "x", "url": str(corrupt)}, 400, "cannot load"),
        ({"model_name": "x", "url": str(truncated)}, 400, "cannot load"),
        ({"model_name": "x", "url": str(no_meta)}, 400, "cannot load"),
        ({"model_name": "a/b", "url": good}, 400, "'/'"),
        ({"model_name": "..", "url": good}, 400, "'..'"),
        ({"model_name": "a\\b", "url": good}, 400, "'\\'"),
        ({"model_name": "a\x00b", "url": good}, 400, "printable"),
        ({"model_name": "n" * 1000, "url": good}, 400, f"at most {MAX_NAME}"),
        ({"model_name": "", "url": good}, 400, "non-empty"),
        ({"model_name": 7, "url": good}, 400, "non-empty string"),
        ({"model_name": "x", "url": "/etc"}, 400, "under"),
        ({"model_name": "x", "url": f"{root}/../outside"}, 400, "under"),
        ({"model_name": "x", "url": str(escape)}, 400, "under"),
        ({"model_name": "x", "url": str(linked)}, 400, "links outside"),
        ({"model_name": "x", "url": str(root / "missing")}, 400, "not a directory"),
        ({"model_name": "x", "url": 5}, 400, "'url'"),
        ({"model_name": "x"}, 400, "'url'"),
        ({"model_name": "x", "url": good, "extra": 1}, 400, "unknown key 'extra'"),
        (["x", good], 400, "expected"),
    ]


def test_every_bad_load_is_a_json_4xx_and_the_loaded_models_keep_serving(
    start_server, root, heads, tmp_path
):
    server = start_server(multi_model_env(root))
    assert load(server, "a", model_folder(root, "a", heads["a"])).status == 200
    before = without_timings(invoke(server, "a", PICTURE).json())
    outside = tmp_path / "outside"
    model_folder(tmp_path, "outside", heads["b"])
    json_type = {"Content-Type": "application/json"}
    for body, status, word in _bad_loads(root, heads, outside):
        resp = server.request("POST", "/models", json.dumps(body).encode(), json_type)
        _error(resp, status, word)
    raw_cases = [
        (b"{not json", 400, "not JSON"),
        (b"", 400, "empty"),
        (b"[" * 100_000, 413, "bytes"),
        (json.dumps({"model_name": "x", "url": "y" * 70_000}).encode(), 413, "limit"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "nested"),
        (b"\xff\xfe{}", 400, "not JSON"),
    ]
    for raw, status, word in raw_cases:
        _error(server.request("POST", "/models", raw, json_type), status, word)
    for method, path in (
        ("GET", "/models/unknown"),
        ("DELETE", "/models/unknown"),
        ("POST", "/models/unknown/invoke"),
        ("GET", "/models/a%00b"),
        ("DELETE", "/models/a%2Fb"),
    ):
        _error(server.request(method, path, PICTURE if method == "POST" else None), 404)
    # Nothing loaded by mistake, the loaded model answers as before, and every log line is JSON.
    assert [m["modelName"] for m in server.request("GET", "/models").json()["models"]] == ["a"]
    assert without_timings(invoke(server, "a", PICTURE).json()) == before
    assert server.request("GET", "/ping").status == 200
    assert all(record["message"] for record in server.log_records())
    assert "Traceback" not in server.log_text() + server.stderr_text()


def test_invocations_of_three_models_go_on_while_a_fourth_loads(
    start_server, root, heads, tmp_path
):
    server = start_server(multi_model_env(root, SERVE_QUEUE_DEADLINE="30"))
    for name, path in heads.items():
        assert load(server, name, model_folder(root, name, path)).status == 200
    # The fourth: ~a second of warm-up inference on two cores, besides its compile.
    slow = model_folder(root, "slow", slow_model(tmp_path / "slow.onnx", size=256, layers=120))
    done: list[tuple[str, int, float]] = []
    stop = threading.Event()

    def client(name: str) -> None:
        while not stop.is_set():
            resp = invoke(server, name, PICTURE)
            done.append((name, resp.status, time.monotonic()))

    threads = [threading.Thread(target=client, args=(name,)) for name in heads]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    load_started = time.monotonic()
    loaded = load(server, "slow", slow)
    load_ended = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(60)
    assert loaded.status == 200, loaded.body
    assert all(status == 200 for _, status, _ in done), {s for _, s, _ in done}
    during = [name for name, _, at in done if load_started < at < load_ended]
    for name in heads:  # every model answered while the fourth loaded: none waited for it
        assert during.count(name) >= 3, (name, during.count(name), load_ended - load_started)
    assert invoke(server, "slow", PICTURE).status == 200


def test_sigterm_stops_a_multi_model_server_with_models_loaded_exit_0(start_server, root, heads):
    server = start_server(multi_model_env(root))
    for name, path in heads.items():
        assert load(server, name, model_folder(root, name, path)).status == 200
    assert server.terminate() == 0
    records = server.log_records()
    assert next(r for r in records if r["message"] == "ready")["mode"] == "multi-model"
    assert records[-1]["message"] == "stopped"


def test_the_inference_slots_are_one_pool_for_all_models(start_server, root):
    server = start_server(multi_model_env(root, SERVE_INFERENCE_SLOTS="3"))
    assert server.request("GET", "/ping").json()["inference_slots"] == 3


# --- the pieces, without a server -----------------------------------------------------------


def test_every_model_waits_for_a_slot_of_the_one_pool(tmp_path, heads):
    root = tmp_path / "models"
    env = {"SERVE_MODELS_ROOT": str(root), "SERVE_INFERENCE_SLOTS": "1"}
    settings = Settings.from_env({**env, "ORT_INTRA_OP_THREADS": "1"})
    registry = Registry(settings, Choice("onnxruntime", "fp32", "test"), lambda d: None, UNLIMITED)
    first = registry.load("a", str(model_folder(root, "a", heads["a"])))
    second = registry.load("b", str(model_folder(root, "b", heads["b"])))
    grey = np.full((64, 64, 3), 114, np.uint8)
    done = threading.Event()

    def infer() -> None:
        second.detector.detect(grey, Options())
        done.set()

    with registry.slots_pool:  # the one slot, taken as model a's inference would take it
        worker = threading.Thread(target=infer)
        worker.start()
        assert not done.wait(0.5), "model b inferred while model a held the only slot"
    assert done.wait(30)
    worker.join()
    assert first.detector.detect(grey, Options()) is not None
    assert registry.unload("a") == first.footprint and registry.names() == ["b"]


@pytest.mark.parametrize("name", ["a", "a.tar.gz", "customer-17_site.3", "x" * MAX_NAME])
def test_good_names_are_kept_as_they_are(name):
    assert check_name(name) == name


def test_the_budget_is_the_cgroup_limit_less_headroom_and_the_start_rss(tmp_path):
    (tmp_path / "memory.max").write_text(f"{4096 * 1024 * 1024}\n")
    limit = memory_limit(str(tmp_path))
    assert limit == 4096 * 1024 * 1024
    settings = Settings.from_env({"SERVE_MEMORY_HEADROOM_MB": "512"})
    budget = Budget.from_settings(settings, 100 * 1024 * 1024, limit)
    assert budget.limit_bytes == (4096 - 512) * 1024 * 1024
    assert budget.models_bytes == (4096 - 512 - 100) * 1024 * 1024
    overridden = Settings.from_env({"SERVE_MODEL_MEMORY_MB": "300"})
    assert Budget.from_settings(overridden, 0, limit).models_bytes == 300 * 1024 * 1024


def test_an_unlimited_cgroup_falls_back_to_the_ram(tmp_path):
    (tmp_path / "memory.max").write_text("max\n")
    limit = memory_limit(str(tmp_path))
    assert limit is not None and limit > 256 * 1024 * 1024  # /proc/meminfo's MemTotal
