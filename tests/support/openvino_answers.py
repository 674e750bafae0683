"""What serve's OpenVINO runtime answers for a graph, computed here without the runtime: the graph
`serve.runtimes.openvino.served_graph` gives, compiled, and (a detection export with its anchors)
the numpy decode after it (serve/runtimes/openvino_heads.py). Tests that expect the runtime's
answers bit for bit compare them with this."""

from __future__ import annotations

import numpy as np
import openvino as ov

from serve.runtimes.openvino_heads import Heads


def answer(compiled: ov.CompiledModel, heads: Heads | None, tensor: np.ndarray) -> np.ndarray:
    """The raw (1, A, 5 + nc) rows for `tensor`, every one of them."""
    outputs = compiled.create_infer_request().infer({0: tensor})
    if heads is None:
        return outputs[0]
    return heads.decode([outputs[port] for port in compiled.outputs], None)
