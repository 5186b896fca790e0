"""A CPU-only "inference server" for the end-to-end profile test: N requests, each ~WORK_MS of busy CPU work in
an "infer" phase after a short "preprocess" phase, all on the main thread. Usage: cpu_requests.py [N] [WORK_MS]."""
import sys
import time

from nsys_doctor.instrument import phase, request

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
WORK_MS = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0   # long enough to stand out from nsys's own timer noise
PREPROCESS_SHARE = 0.2                                        # of each request, so phases nest visibly


def spin(seconds: float) -> int:
    """Busy CPU work (not sleep), so CPU sampling would see it."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


for _ in range(REQUESTS):
    with request():
        with phase("preprocess"):
            spin(WORK_MS * PREPROCESS_SHARE / 1000)
        with phase("infer"):
            spin(WORK_MS * (1 - PREPROCESS_SHARE) / 1000)
print(f"cpu_requests: {REQUESTS} requests done")
