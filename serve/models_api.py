"""The Falcon app of a multi-model server: /ping and SageMaker's /models API.

`POST /models/NAME/invoke` is `/invocations` itself: each loaded model gets its own
`serve.app.Invocations` (the same bodies, options, answers and errors), all of them sharing one
admission queue and, through the registry, one pool of inference slots. Errors take their shape
in `serve.app.render_error`, as everywhere in the server.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import falcon

from serve.admission import Admission, Limits
from serve.app import (
    JSON,
    Invocations,
    RequestLog,
    handle_unexpected,
    loads_json,
    render_error,
    take_bodies,
)
from serve.config import MIB, Settings
from serve.detector import Detector
from serve.errors import BadJson, BodyTooLarge, EmptyBody
from serve.locate import model_bytes
from serve.multi_model import Budget, Entry, Registry, resident_bytes
from serve.runtimes.precision import Choice
from serve.scratch import Scratch

MAX_REQUEST_BYTES = 64 * 1024  # a POST /models body: a name and a path
_URLSAFE = str.maketrans("-_", "+/")
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class BadQuery(falcon.HTTPBadRequest):
    def __init__(self, why: str) -> None:
        super().__init__(title="Bad query", description=why)


def _read_json(req: falcon.Request) -> Any:
    """The body as JSON, refused past MAX_REQUEST_BYTES before it is parsed."""
    if req.content_length is not None and req.content_length > MAX_REQUEST_BYTES:
        raise BodyTooLarge(req.content_length, MAX_REQUEST_BYTES)
    raw = req.bounded_stream.read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        raise BodyTooLarge(len(raw), MAX_REQUEST_BYTES)
    if not raw:
        raise EmptyBody()
    try:
        return loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadJson(f"the body is not JSON: {str(exc)[:120]}") from None


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _after(token: str) -> str:
    try:
        name = base64.b64decode(token.translate(_URLSAFE), validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        name = ""
    if not name:
        raise BadQuery("'next_page_token' is not one this server gave")
    return name


def describe(entry: Entry) -> dict[str, Any]:
    """GET /models/NAME: the contract's two keys, then what the model is and what it costs."""
    detector, info = entry.detector, entry.detector.model_info
    answer: dict[str, Any] = {
        "modelName": entry.name,
        "modelUrl": entry.url,
        "model": info.name,
        "task": info.task,
        "classes": list(info.names),
        "img_size": info.img_size,
        "layout": info.layout,
        "runtime": detector.runtime,
        "precision": detector.precision,
        "float_precision": detector.float_precision,
        "file_bytes": _file_bytes(entry.path),
        "footprint_bytes": entry.footprint,
        "rss_growth_bytes": entry.rss_growth,
        "load_ms": round(entry.load_seconds * 1000, 1),
        "invocations": entry.invocations,
    }
    if info.task != "detect":
        answer["keypoints"] = list(info.keypoint_names)
    return answer


class MultiPing:
    """200 from the start: a multi-model server is healthy with no model loaded."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        registry = self._registry
        resp.media = {
            "status": "ok",
            "mode": "multi-model",
            "models": len(registry.names()),
            "inference_slots": registry.slots,
            "memory": {
                "resident_mib": round(resident_bytes() / MIB, 1),
                "models_mib": round(registry.charged() / MIB, 1),
                "budget_mib": round(registry.budget.models_bytes / MIB, 1),
            },
        }

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JSON


class Models:
    """GET /models (paginated) and POST /models {model_name, url}."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_PAGE) or DEFAULT_PAGE
        token = req.get_param("next_page_token")
        names = self._registry.names()
        if token:
            after = _after(token)
            names = [name for name in names if name > after]
        page = names[:limit]
        models = []
        for name in page:
            try:
                models.append({"modelName": name, "modelUrl": self._registry.get(name).url})
            except falcon.HTTPNotFound:  # unloaded since names() was read
                continue
        answer: dict[str, Any] = {"models": models}
        if len(names) > limit:
            answer["nextPageToken"] = _token(page[-1])
        resp.media = answer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        document = _read_json(req)
        if not isinstance(document, dict):
            raise BadJson('expected {"model_name": NAME, "url": DIRECTORY}')
        unknown = sorted(set(document) - {"model_name", "url"})
        if unknown:
            raise BadJson(f"unknown key '{str(unknown[0])[:40]}'; known: model_name, url")
        entry = self._registry.load(document.get("model_name"), document.get("url"))
        req.context.model = entry.name
        resp.media = {"status": "loaded", **describe(entry)}


class Model:
    """GET /models/NAME and DELETE /models/NAME."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = describe(self._registry.get(name))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        footprint = self._registry.unload(name)
        resp.media = {"status": "unloaded", "modelName": name, "footprint_bytes": footprint}


class ModelInvoke:
    """POST /models/NAME/invoke: the model's own /invocations."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        entry = self._registry.get(name)
        entry.invocations += 1
        entry.handler.on_post(req, resp)


def create_multi_model_app(
    settings: Settings, choice: Choice, budget: Budget, scratch: Scratch
) -> tuple[falcon.App, Registry]:
    """The app and its registry: each model loaded gets its own Invocations (photos and clips,
    the clips written to `scratch`), all of them sharing one admission queue (and, through the
    registry, one pool of inference slots)."""
    app = falcon.App(middleware=[RequestLog()], cors_enable=False)
    take_bodies(app)

    admission: list[Admission] = []  # made once the registry has counted the slots

    def make_handler(detector: Detector) -> Invocations:
        return Invocations(detector, settings, admission[0], scratch)

    registry = Registry(settings, choice, make_handler, budget)
    admission.append(
        Admission(Limits.for_server(registry.slots, settings.threads, settings.queue_deadline))
    )
    app.add_route("/ping", MultiPing(registry))
    app.add_route("/models", Models(registry))
    app.add_route("/models/{name}", Model(registry))
    app.add_route("/models/{name}/invoke", ModelInvoke(registry))
    app.set_error_serializer(render_error)
    app.add_error_handler(Exception, handle_unexpected)
    return app, registry


def _file_bytes(path: Path) -> int | None:
    """The model's bytes on disk (an IR's two files), None where it is gone since its load."""
    try:
        return model_bytes(path)
    except OSError:
        return None
