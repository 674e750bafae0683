"""An INT8 export's graph without its quantization, which OpenVINO compiles five times faster.

OpenVINO's CPU plugin takes 0.8-1.2 s on 2 vCPUs to compile yolov7-tiny's INT8 QDQ export (its
low-precision passes over ~3200 nodes: the ONNX frontend spells each DequantizeLinear as Convert,
Subtract and Multiply, each QuantizeLinear as FakeQuantize and Convert), and 0.18 s for this view
of it, which is the FP32 graph's size. The OpenVINO runtime answers from the view while the INT8
graph compiles in the background, so that an INT8 export starts as fast as an FP32 one
(serve/runtimes/openvino.py; docs/serving.md "Cold start").

The view bypasses every activation's quantize-dequantize chain and folds every dequantized weight
and bias into a float constant: it computes the export's own quantized weights on float
activations, i.e. the FP32 model with only its weights rounded. An NNCF IR export
(`--int8-format ir`) has the same two parts in OpenVINO's own spelling: a FakeQuantize on each
quantized activation (bypassed) and int8 weight constants behind Convert and Multiply (folded).
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.passes as passes
from openvino import opset13

_INTEGERS = (ov.Type.i8, ov.Type.u8, ov.Type.i32)


def _kind(output: ov.Output) -> str:
    return output.get_node().get_type_name()


def _source(output: ov.Output, index: int = 0) -> ov.Output:
    return output.get_node().input_value(index)


def _quantized_input(dequantized: ov.Node) -> ov.Output | None:
    """For the Multiply that ends an activation's DequantizeLinear, what went into the
    QuantizeLinear before it; None for any other node."""
    if dequantized.get_type_name() != "Multiply":
        return None
    value = dequantized.input_value(0)
    if _kind(value) == "Subtract":  # the zero point (absent when it is 0)
        value = _source(value)
    if _kind(value) != "Convert" or _kind(_source(value)) != "Convert":
        return None
    quantized = _source(_source(value))
    return _source(quantized) if _kind(quantized) == "FakeQuantize" else None


def _activation_fake_quantize(node: ov.Node) -> ov.Output | None:
    """For a FakeQuantize on an activation that float operations read (an NNCF IR's quantizer;
    the ONNX frontend's QuantizeLinear is a FakeQuantize read by a Convert to integers, taken out
    with its DequantizeLinear by _quantized_input), its input; None for any other node."""
    if node.get_type_name() != "FakeQuantize" or _kind(node.input_value(0)) == "Constant":
        return None
    readers = node.output(0).get_target_inputs()
    if any(reader.get_node().get_type_name() == "Convert" for reader in readers):
        return None
    return node.input_value(0)


def _integers_to_float(node: ov.Node) -> bool:
    """A Convert of an integer constant to f32 (how the frontend dequantizes one)."""
    if node.get_type_name() != "Convert" or _kind(node.input_value(0)) != "Constant":
        return False
    source = node.input_value(0).get_element_type()
    return node.get_output_element_type(0) == ov.Type.f32 and source in _INTEGERS


def float_view(model: ov.Model) -> ov.Model | None:
    """A copy of `model` with its quantization taken out; None where it has none to take."""
    view = model.clone()
    bypassed = 0
    for node in view.get_ordered_ops():
        original = _quantized_input(node)
        if original is None:
            original = _activation_fake_quantize(node)
        if original is not None:
            node.output(0).replace(original)
            bypassed += 1
        elif _integers_to_float(node):
            # A weight's, bias's or zero point's integers as float: the plugin's constant folding
            # leaves such a Convert alone (it keeps weights compressed), so it is done here and
            # the Subtract and Multiply after it fold below.
            integers = node.input_value(0).get_node().get_data()
            as_float = opset13.constant(integers.astype(np.float32))
            node.output(0).replace(as_float.output(0))
    if not bypassed:
        return None
    folding = passes.Manager()
    folding.register_pass(passes.ConstantFolding())
    folding.run_passes(view)
    return view
