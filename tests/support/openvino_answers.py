"""What serve's OpenVINO runtime answers for a graph, computed here without the runtime: the whole
graph compiled, or (a detection export with its anchors) its cut before the decode, compiled, and
the numpy decode after it (serve/runtimes/openvino_heads.py). Tests that expect the runtime's
answers bit for bit compare them with this."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import openvino as ov

from serve.runtimes.openvino import metadata_of
from serve.runtimes.openvino_heads import Heads, headless


def served_graph(model: ov.Model) -> tuple[ov.Model, Heads | None]:
    """The graph the runtime compiles for `model` and the decode after it (None: none)."""
    cut = headless(model, metadata_of(model))
    return (model, None) if cut is None else cut


def answer(compiled: ov.CompiledModel, heads: Heads | None, tensor: np.ndarray) -> np.ndarray:
    """The raw (1, A, 5 + nc) rows for `tensor`, every one of them."""
    outputs = compiled.create_infer_request().infer({0: tensor})
    if heads is None:
        return outputs[0]
    return heads.decode([outputs[port] for port in compiled.outputs], None)


def compiled_answer(
    model: ov.Model, compile_: Callable[[ov.Model], ov.CompiledModel], tensor: np.ndarray
) -> np.ndarray:
    """`answer` of `compile_` applied to `model`'s served graph."""
    graph, heads = served_graph(model)
    return answer(compile_(graph), heads, tensor)
