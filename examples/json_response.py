"""Bottleneck: the response built in Python, one detection at a time, after the GPU is done.

    python3 examples/json_response.py            # slow: per-box Python loop, .tolist() of each row, dict per box
    python3 examples/json_response.py --fixed    # fast: filtered and rounded with numpy, one json.dumps of arrays

A detection service: a small convolutional detector in fp16 scores 4 images of 512 x 512 and returns its 20000
candidate boxes per image (class scores for 80 classes); the response lists, for each image, the boxes above a
score threshold as JSON. Each request is one NVTX range named `detect`.

WHAT IS WRONG (default variant)
    After the model, the response is assembled in Python: for every candidate box, its row is turned into a Python
    list, the best class found with max() over 80 floats, and a dict with rounded coordinates appended when it is
    above the threshold; then json.dumps of the whole list. Tens of thousands of Python-level iterations per
    request, with the GPU idle (in the profile: a long stretch of CPU after the request's last GPU work, CPU samples
    in the interpreter and in json).

WHY THE FIX WORKS (--fixed)
    The same filtering, arg-max and rounding as whole-array numpy operations (one pass each over the copied
    scores), and the response serialised from arrays (a few list conversions of the kept boxes only): the same JSON
    in a fraction of the time.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn

from serving import nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
BATCH, HW, BOXES, CLASSES = (4, 512, 20000, 80) if not SMOKE else (1, 32, 50, 4)
THRESHOLD = 0.6


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU(),
                                      nn.Conv2d(64, 128, 3, 2, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(128, -(-BOXES * (4 + CLASSES) // 64))     # repeated 64 times in forward

    def forward(self, x):
        f = self.backbone(x).flatten(1)
        out = self.head(f).view(len(x), -1).repeat(1, 64)[:, :BOXES * (4 + CLASSES)]
        return out.view(len(x), BOXES, 4 + CLASSES).sigmoid()


def respond_slow(dets: np.ndarray) -> str:
    images = []
    for img in dets:
        boxes = []
        for row in img:                                   # BAD: one Python iteration per candidate box
            r = row.tolist()
            scores = r[4:]
            best = max(scores)
            if best > THRESHOLD:
                boxes.append({"box": [round(v * HW, 1) for v in r[:4]], "class": scores.index(best),
                              "score": round(best, 3)})
        images.append(boxes)
    return json.dumps(images)


def respond_fast(dets: np.ndarray) -> str:
    images = []
    for img in dets:
        cls = img[:, 4:].argmax(1)                        # GOOD: whole-array passes
        best = img[np.arange(len(img)), 4 + cls]
        keep = best > THRESHOLD
        xyxy = np.round(img[keep, :4] * HW, 1).tolist()
        images.append([{"box": b, "class": int(c), "score": round(float(s), 3)}
                       for b, c, s in zip(xyxy, cls[keep].tolist(), best[keep].tolist())])
    return json.dumps(images)


def serve(model, x_host, fixed):
    with nvtx("detect"):
        dets = model(x_host.to(DEV, non_blocking=True).to(DTYPE)).float().cpu().numpy()
        with nvtx("respond"):
            return (respond_fast if fixed else respond_slow)(dets)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (numpy response)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Detector().to(DEV).eval().to(DTYPE)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, 3, HW, HW, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        same = respond_slow(model(inputs[0].to(DEV).to(DTYPE)).float().cpu().numpy()) == \
            respond_fast(model(inputs[0].to(DEV).to(DTYPE)).float().cpu().numpy())
        print(f"json_response: both variants give the same JSON: {same}", flush=True)
        dt = serve_timed(lambda i: serve(model, inputs[i % 2], args.fixed), args.warmup, args.requests)
    variant = "fixed" if args.fixed else "slow"
    print(f"json_response [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
