"""Wrap the entry points of TensorRT, PyTorch and ONNX Runtime in an NVTX phase, without changing what they return.

Each wrapper marks the call as a phase (default "infer") inside whatever request() the caller has open; pass
name=REQUEST_RANGE to mark each call as a whole request instead. Arguments, return values and exceptions pass
through untouched; the range is closed on exceptions too.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

TENSORRT_METHODS = ("execute_async_v3", "execute_v2", "execute_async_v2")   # IExecutionContext, TensorRT 8-10
ONNXRUNTIME_METHODS = ("run", "run_with_iobinding")                          # InferenceSession
_HANDLES_ATTR = "_nsys_doctor_hooks"


def _ranged(func: Callable, name: str, domain: str | None) -> Callable:
    from . import _range
    marker = _range(name, domain)

    @functools.wraps(func)
    def call(*args, **kwargs):
        with marker:
            return func(*args, **kwargs)
    call.__wrapped_by_nsys_doctor__ = True
    return call


class _Proxy:
    """Stands in for an object whose methods cannot be replaced (pybind11 classes such as TensorRT's):
    the named methods are ranged, everything else (attributes, setters, other methods) goes to the original."""

    def __init__(self, target: Any, methods: dict[str, Callable]):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_methods", methods)

    def __getattr__(self, attr: str):
        methods = object.__getattribute__(self, "_methods")
        if attr in methods:
            return methods[attr]
        return getattr(object.__getattribute__(self, "_target"), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), attr, value)

    def __repr__(self) -> str:
        return f"<nsys-doctor NVTX wrapper of {object.__getattribute__(self, '_target')!r}>"


def wrap_tensorrt_context(ctx: Any, name: str = "infer", domain: str | None = None) -> Any:
    """A stand-in for a TensorRT IExecutionContext whose execute_* calls are NVTX-ranged; use it instead of ctx.

    TensorRT's context is a pybind11 object that refuses new attributes, so this returns a proxy. The methods
    are wrapped only where present: execute_async_v3 (TensorRT 10), execute_v2, execute_async_v2 (8.x)."""
    methods = {m: _ranged(getattr(ctx, m), name, domain) for m in TENSORRT_METHODS if hasattr(ctx, m)}
    if not methods:
        raise TypeError(f"{type(ctx).__name__} has none of {', '.join(TENSORRT_METHODS)}: not a TensorRT context")
    return _Proxy(ctx, methods)


def wrap_onnxruntime_session(sess: Any, name: str = "infer", domain: str | None = None) -> Any:
    """Range each `sess.run(...)` (and run_with_iobinding) of an onnxruntime.InferenceSession; returns sess.

    The session is a Python class, so its bound methods are replaced on the instance: isinstance checks still
    hold and callers holding `sess` see the ranges too. Wrapping twice does nothing."""
    for method in ONNXRUNTIME_METHODS:
        func = getattr(sess, method, None)
        if func is not None and not getattr(func, "__wrapped_by_nsys_doctor__", False):
            setattr(sess, method, _ranged(func, name, domain))
    return sess


def wrap_torch_module(module: Any, name: str = "infer", domain: str | None = None) -> Any:
    """Range every forward of a torch.nn.Module with forward pre/post hooks; returns the module.

    Hooks leave the module's class, its state_dict and torch.compile/jit untouched and return None, so outputs
    are the module's own. always_call=True (torch >= 2.0) closes the range when forward raises. Wrapping twice
    does nothing; `unwrap_torch_module` removes the hooks."""
    if getattr(module, _HANDLES_ATTR, None):
        return module
    from . import _range
    marker = _range(name, domain)

    def before(_module, _inputs):
        marker.__enter__()

    def after(_module, _inputs, _output):
        marker.__exit__(None, None, None)

    handles = (module.register_forward_pre_hook(before),
               module.register_forward_hook(after, always_call=True))
    setattr(module, _HANDLES_ATTR, handles)
    return module


def unwrap_torch_module(module: Any) -> Any:
    """Remove the hooks wrap_torch_module added."""
    for handle in getattr(module, _HANDLES_ATTR, None) or ():
        handle.remove()
    if hasattr(module, _HANDLES_ATTR):
        delattr(module, _HANDLES_ATTR)
    return module
