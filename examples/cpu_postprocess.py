"""Bottleneck: CPU post-processing. A detector's raw output is decoded and NMS'd in pure Python, one box at a time.

    python3 examples/cpu_postprocess.py            # slow: .tolist() + Python loops for decode and NMS
    python3 examples/cpu_postprocess.py --fixed    # fast: the same decode and NMS as torch ops on the GPU

The model is a small convolutional detector head (YOLO-style output: 8400 anchors x (4 box + 80 class) values) over
a batch of 2 images of 640 x 640; its GPU part is a few milliseconds.

WHAT IS WRONG (default variant)
    The raw predictions (2 x 8400 x 84 floats) are copied to the host and turned into Python lists; then, for each
    anchor, Python finds the best class, applies the score threshold, converts the box, sorts the candidates and runs
    greedy non-maximum suppression with an IoU computed pair by pair. That is hundreds of thousands of Python-level
    operations per request on one CPU core while the GPU waits for the next request. In the profile: a long
    `postprocess` phase at the end of every `Inference` range with no GPU work under it, CPU samples in this file's
    functions, and a GPU idle most of the request.

WHY THE FIX WORKS (--fixed)
    The same steps run as batched tensor operations on the GPU: sigmoid and max over classes for all anchors at once,
    a threshold mask, top-k of the candidates, one IoU matrix per image and NMS (torchvision's `batched_nms` when it
    is installed, else the matrix form "Fast NMS"). Only the final boxes (at most 100 per image) are copied to the
    host. The CPU time per request drops from tens of milliseconds to the launches of a few dozen kernels.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn as nn

try:
    from torchvision.ops import batched_nms
except ImportError:          # the fallback below does the same job without torchvision
    batched_nms = None

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
BATCH, SIZE = (2, 640) if not SMOKE else (1, 128)
CLASSES = 80
SCORE_THR, IOU_THR, MAX_CAND, MAX_DET = 0.30, 0.5, 300, 100


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


class Detector(nn.Module):
    """Backbone of strided convs, predictions at strides 8, 16, 32: 80*80 + 40*40 + 20*20 = 8400 anchors at 640."""

    def __init__(self):
        super().__init__()
        c = [3, 32, 64, 128, 256, 512]
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(c[i], c[i + 1], 3, 2, 1), nn.SiLU()) for i in range(5))
        self.heads = nn.ModuleList(nn.Conv2d(ch, 4 + CLASSES, 1) for ch in (128, 256, 512))

    def forward(self, x):
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                p = self.heads[i - 2](x)                         # (B, 84, h, w)
                outs.append(p.flatten(2))
        return torch.cat(outs, 2).transpose(1, 2)               # (B, 8400, 84)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def postprocess_python(pred):
    """BAD: decode + greedy NMS in pure Python over lists, per anchor and per pair of boxes."""
    import math
    results = []
    for img in pred.float().cpu().tolist():                     # 8400 lists of 84 floats each
        cand = []
        for row in img:
            logit = max(row[4:])
            score = 1.0 / (1.0 + math.exp(-logit))
            if score < SCORE_THR:
                continue
            cls = row.index(logit, 4) - 4
            cx, cy, w, h = row[0] * SIZE, row[1] * SIZE, abs(row[2]) * 64 + 4, abs(row[3]) * 64 + 4
            cand.append((score, cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        cand.sort(key=lambda c: -c[0])
        cand = cand[:MAX_CAND]
        keep = []
        for c in cand:
            if all(k[1] != c[1] or iou(k[2], c[2]) < IOU_THR for k in keep):
                keep.append(c)
                if len(keep) == MAX_DET:
                    break
        results.append(keep)
    return results


def fast_nms(boxes, scores, classes):
    """Matrix NMS without a sequential loop ("Fast NMS", YOLACT): a box is dropped when any higher-scored box of its
    class overlaps it by more than the threshold. `boxes` sorted by score, descending."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    iw = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    ih = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    inter = iw * ih
    m = inter / (area[:, None] + area[None] - inter + 1e-9)
    m = (m * (classes[:, None] == classes[None])).triu(1)
    return torch.nonzero(m.amax(0) < IOU_THR).flatten()


def postprocess_gpu(pred):
    """GOOD: the same decode and NMS as tensor ops on the GPU; only the kept boxes come back."""
    pred = pred.float()
    logit, cls = pred[..., 4:].max(-1)                          # (B, 8400)
    score = torch.sigmoid(logit)
    cx, cy = pred[..., 0] * SIZE, pred[..., 1] * SIZE
    w, h = pred[..., 2].abs() * 64 + 4, pred[..., 3].abs() * 64 + 4
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    score = torch.where(score >= SCORE_THR, score, torch.zeros_like(score))
    top = score.topk(MAX_CAND, dim=1)                           # sorted, descending
    out = []
    for b in range(pred.shape[0]):
        s, idx = top.values[b], top.indices[b]
        bx, c = boxes[b, idx], cls[b, idx]
        if batched_nms is not None:
            keep = batched_nms(bx, s, c, IOU_THR)[:MAX_DET]
        else:
            keep = fast_nms(bx, s, c)[:MAX_DET]
        keep = keep[s[keep] >= SCORE_THR]
        out.append(torch.cat([bx[keep], s[keep, None], c[keep, None].float()], 1))
    rows = [torch.cat([o, torch.full((len(o), 1), float(b), device=o.device)], 1) for b, o in enumerate(out)]
    return torch.cat(rows).cpu()                                # one copy for the whole batch: (n, 7)


def serve(model, images, fixed):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = images.to(DEV, non_blocking=True).half() / 255
        with nvtx("infer"):
            pred = model(x)
        with nvtx("postprocess"):
            return postprocess_gpu(pred) if fixed else postprocess_python(pred)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (decode and NMS on the GPU)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Detector().to(DEV).half().eval()
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in range(4)]
    if DEV == "cuda":
        images = [im.pin_memory() for im in images]
    with torch.inference_mode():
        for i in range(args.warmup):
            serve(model, images[i % 4], args.fixed)
        sync()
        t0 = time.perf_counter()
        for i in range(args.requests):
            dets = serve(model, images[i % 4], args.fixed)
        sync()
        dt = time.perf_counter() - t0
    n_det = len(dets) if args.fixed else sum(len(k) for k in dets)
    variant = "fixed" if args.fixed else "slow"
    print(f"cpu_postprocess [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); {n_det} detections in the last; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
