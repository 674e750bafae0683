"""Typed errors, raised where a fault is detected.

Client faults are falcon HTTP errors, so that `serve.app` renders every one of them in a single
place. `ModelError` is not an HTTP error: it stops the server at start.
"""

from __future__ import annotations

import falcon


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for a log (onnxruntime's messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class ModelError(Exception):
    """The model cannot be found, loaded or run; the server must not start."""


class EmptyBody(falcon.HTTPBadRequest):
    def __init__(self) -> None:
        super().__init__(title="Empty body", description="the request body is empty; send an image")


class UnreadableImage(falcon.HTTPBadRequest):
    def __init__(self, why: str) -> None:
        super().__init__(title="Unreadable image", description=why)


class ImageTooLarge(falcon.HTTPContentTooLarge):
    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(
            title="Image too large",
            description=f"the image is {width} x {height} = {width * height} pixels; "
            f"the limit is {limit} pixels",
        )


class BodyTooLarge(falcon.HTTPContentTooLarge):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            title="Body too large",
            description=f"the request body is {size} bytes; the limit is {limit} bytes",
        )


class BadJson(falcon.HTTPBadRequest):
    def __init__(self, why: str) -> None:
        super().__init__(title="Bad JSON body", description=why)


class BadOption(falcon.HTTPBadRequest):
    def __init__(self, key: str, why: str) -> None:
        self.key = key
        super().__init__(title="Bad option", description=f"bad option '{key}': {why}")


class UnsupportedContentType(falcon.HTTPUnsupportedMediaType):
    def __init__(self, content_type: str, accepted: list[str]) -> None:
        super().__init__(
            title="Unsupported content type",
            description=f"Content-Type '{content_type}' is not supported; send image bytes "
            f"as one of {', '.join(accepted)}",
        )


class NotAcceptable(falcon.HTTPNotAcceptable):
    def __init__(self, accept: str, offered: list[str]) -> None:
        super().__init__(
            title="Not acceptable",
            description=f"cannot answer with Accept '{accept}'; available: {', '.join(offered)}",
        )


class NotReady(falcon.HTTPServiceUnavailable):
    def __init__(self) -> None:
        super().__init__(title="Not ready", description="the model is still loading")


class Overloaded(falcon.HTTPServiceUnavailable):
    """Not computed (serve/admission.py): the queue is full, the request waited past its
    deadline, or its client has gone; Retry-After says when to try again, in seconds."""

    def __init__(self, why: str, retry_after: int) -> None:
        super().__init__(title="Overloaded", description=why, retry_after=retry_after)


class InternalError(falcon.HTTPInternalServerError):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            title="Internal error",
            description=f"internal error; quote request id {request_id} when reporting it",
        )


class UnreadableVideo(falcon.HTTPBadRequest):
    def __init__(self, why: str) -> None:
        super().__init__(title="Unreadable video", description=why)


class VideoTooLong(falcon.HTTPContentTooLarge):
    """A clip refused before its frames are computed: too many frames, or too slow to finish."""

    def __init__(self, why: str) -> None:
        super().__init__(title="Video too long", description=why)


class UnencodableClip(falcon.HTTPBadRequest):
    """The annotated clip (Accept: video/mp4) cannot be encoded at this frame size."""

    def __init__(self, why: str) -> None:
        super().__init__(
            title="Cannot encode the clip",
            description=f"{why}; ask for Accept: application/json instead",
        )
