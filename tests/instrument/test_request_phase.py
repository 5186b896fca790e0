"""request()/phase() with the real nvtx package (no profiler attached: its no-op domain). The ranges' presence in a
real profile is checked end to end in tests/cli/test_profile_e2e.py (20 requests with nsys 2023.4)."""
import threading

import pytest

from nsys_doctor.instrument import INFER, REQUEST_RANGE, phase, request


def test_default_request_name_is_what_analyze_looks_for():
    assert REQUEST_RANGE == "Inference"
    assert request() is request(REQUEST_RANGE)      # cached: entering again costs only the push


def test_context_manager_and_decorator_keep_results():
    @request()
    def handle(x, *, scale):
        with phase("preprocess"):
            y = x * scale
        with phase(INFER):
            return [y, y + 1]

    with request():
        assert handle(3, scale=2) == [6, 7]
    assert handle.__name__ == "handle"


def test_exceptions_pass_through_and_ranges_stay_usable():
    with pytest.raises(ValueError, match="bad input"):
        with request():
            with phase("preprocess"):
                raise ValueError("bad input")
    with request():                                  # still usable after an exception closed the ranges
        pass


def test_shared_across_threads():
    out = []

    def worker(i):
        for _ in range(100):
            with request():
                with phase(INFER):
                    out.append(i)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == sorted(list(range(4)) * 100)
