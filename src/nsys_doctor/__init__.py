"""nsys-doctor: why is my GPU inference slow? Reads Nsight Systems profiles, finds the requests, names the bottleneck.

From Python (docs/python-api.md):

    import nsys_doctor
    report = nsys_doctor.analyze("run.sqlite")      # -> Report: .verdict, .findings, .requests, .table("requests")

    with nsys_doctor.request():                     # mark requests in your own code (nsys_doctor.instrument)
        with nsys_doctor.phase("preprocess"): ...

Everything but `__version__` is imported on first use, so `import nsys_doctor` costs about a millisecond.
"""
__version__ = "0.1.0"

# name -> (module, attribute): imported when first asked for (module __getattr__, PEP 562)
_LAZY = {
    "analyze": ("api", "analyze"),
    "load": ("api", "load"),
    "Report": ("api", "Report"),
    "NsysDoctorError": ("errors", "NsysDoctorError"),
    "request": ("instrument", "request"),
    "phase": ("instrument", "phase"),
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nsys_doctor' has no attribute {name!r}")
    import importlib
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value          # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
