"""Wrappers keep results identical and mark each call with an NVTX range (logged by the range_log fixture).

TensorRT cannot be installed on these machines (its wheels come only from NVIDIA's index), so its helper is
tested against a fake with TensorRT's method names (execute_async_v3 / execute_v2 / execute_async_v2), not a
real IExecutionContext. torch and onnxruntime tests use the real libraries and skip when they are not installed.
"""
from __future__ import annotations

import pytest

from nsys_doctor.instrument import REQUEST_RANGE, wrap_onnxruntime_session, wrap_tensorrt_context, wrap_torch_module
from nsys_doctor.instrument.wrappers import unwrap_torch_module


class FakeTensorRTContext:
    """Mimics tensorrt.IExecutionContext: execute_* return True on success; refuses new attributes like pybind11."""
    __slots__ = ("calls", "debug_sync", "_addresses")

    def __init__(self):
        self.calls, self.debug_sync, self._addresses = [], False, {}

    def set_tensor_address(self, name, ptr):
        self._addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        self.calls.append(("v3", stream_handle))
        return True

    def execute_v2(self, bindings):
        self.calls.append(("v2", tuple(bindings)))
        if not bindings:
            raise RuntimeError("no bindings")
        return True


def test_tensorrt_calls_are_ranged_and_unchanged(range_log):
    ctx = FakeTensorRTContext()
    with pytest.raises(AttributeError):
        ctx.execute_v2 = None                       # why a proxy is needed: the object refuses new attributes
    wrapped = wrap_tensorrt_context(ctx)
    assert wrapped.set_tensor_address("input", 1234) is True and ctx._addresses == {"input": 1234}
    assert wrapped.execute_async_v3(7) is True
    assert wrapped.execute_v2([1, 2]) is True
    assert ctx.calls == [("v3", 7), ("v2", (1, 2))]
    assert range_log.events == [("push", "infer"), ("pop", "infer")] * 2
    wrapped.debug_sync = True                       # attribute writes reach the real context
    assert ctx.debug_sync is True
    assert not hasattr(wrapped, "execute_async_v2")  # absent methods stay absent


def test_tensorrt_exception_closes_the_range(range_log):
    wrapped = wrap_tensorrt_context(FakeTensorRTContext(), name=REQUEST_RANGE)
    with pytest.raises(RuntimeError, match="no bindings"):
        wrapped.execute_v2([])
    assert range_log.events == [("push", "Inference"), ("pop", "Inference")]


def test_tensorrt_rejects_other_objects():
    with pytest.raises(TypeError, match="not a TensorRT context"):
        wrap_tensorrt_context(object())


def test_torch_module_outputs_unchanged(range_log):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    x = torch.randn(8, 16)
    with torch.no_grad():
        before = model(x)
        wrapped = wrap_torch_module(model)
        assert wrapped is model and wrap_torch_module(model) is model      # twice: still one pair of hooks
        after = model(x)
    assert torch.equal(before, after)
    assert range_log.events == [("push", "infer"), ("pop", "infer")]
    unwrap_torch_module(model)
    model(x)
    assert len(range_log.events) == 2


def test_torch_forward_exception_closes_the_range(range_log):
    torch = pytest.importorskip("torch")
    model = wrap_torch_module(torch.nn.Linear(4, 4))
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5))                    # wrong width
    assert range_log.events == [("push", "infer"), ("pop", "infer")]


def _tiny_onnx_model() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1, 2, 3, 4, 5, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8                            # readable by onnxruntime releases of the last years
    return model.SerializeToString()


def test_onnxruntime_run_unchanged(range_log):
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    sess = ort.InferenceSession(_tiny_onnx_model(), providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = sess.run(None, {"x": x})
    assert wrap_onnxruntime_session(sess) is sess
    wrap_onnxruntime_session(sess)                  # twice: still one range per call
    after = sess.run(None, {"x": x})
    assert isinstance(sess, ort.InferenceSession)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert range_log.events == [("push", "infer"), ("pop", "infer")]
