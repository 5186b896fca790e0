"""Bottleneck: text tokenized in pure Python on the request thread, before a short GPU model.

    python3 examples/tokenize_workers.py            # slow: each request tokenizes its texts, then runs the model
    python3 examples/tokenize_workers.py --fixed    # fast: worker processes tokenize ahead, the request thread
                                                    #       only runs the model

Each request classifies 64 short documents (~120 words each): a word-level tokenizer in plain Python (lower-case,
strip punctuation, split, a vocabulary lookup with a hashed fallback for unknown words, pad/truncate to 128 ids),
then an embedding + 4-layer transformer encoder in fp16 on the GPU. Each request is one NVTX range named `classify`,
with `tokenize` and `model` ranges inside it.

WHAT IS WRONG (default variant)
    The tokenizer is Python, one word at a time: ~8k words per request cost the CPU tens of milliseconds, while the
    model's GPU work is a few milliseconds. The GPU waits for the tokenizer at the start of every request (in the
    profile: a long stretch of CPU work and no GPU work at the start of each `classify` range, CPU samples in
    the tokenizer's functions).

WHY THE FIX WORKS (--fixed)
    A pool of worker processes (multiprocessing, so the GIL is not shared) tokenizes the upcoming requests' texts
    ahead, while the request thread runs the model for the current one: the request thread receives ready token
    ids, and the tokenizing overlaps the GPU work instead of preceding it. With enough workers (WORKERS) the rate
    is set by the model, not the tokenizer. (In a real service: a tokenizer in Rust or C++, such as the `tokenizers`
    package, or tokenizing in the front end.)

--ab K: both variants in ONE process, K rounds of one block each (--requests requests per block, order alternating,
each block after one untimed request), printing each variant's median ms/request and the median of the rounds'
differences (examples/ab.py says why).

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import multiprocessing as mp
import os
import random
import string

import torch
import torch.nn as nn

from serving import nvtx    # shared scaffolding (examples/serving.py)
from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
DOCS, WORDS, SEQ, D, LAYERS = (64, 120, 128, 512, 4) if not SMOKE else (2, 10, 16, 32, 1)
VOCAB = 30000
WORKERS = 6      # worker processes in the fixed variant: enough that tokenizing keeps ahead of the model
PUNCT = str.maketrans("", "", string.punctuation)


def make_vocab():
    rnd = random.Random(1)
    words = {"".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(2, 9))) for _ in range(VOCAB)}
    return {w: i + 2 for i, w in enumerate(sorted(words))}


_VOCAB = make_vocab()
_WORDS = sorted(_VOCAB)


def make_docs(seed):
    rnd = random.Random(seed)
    docs = []
    for _ in range(DOCS):
        words = [rnd.choice(_WORDS) if rnd.random() < 0.9 else rnd.choice(_WORDS) + "x" for _ in range(WORDS)]
        docs.append(" ".join(w.capitalize() + rnd.choice(["", ",", ".", "!"]) for w in words))
    return docs


def tokenize(docs):
    """Word-level tokenizer in plain Python -> a list of DOCS lists of SEQ ids (0 = padding, 1 = unknown)."""
    out = []
    for doc in docs:
        ids = []
        for word in doc.lower().translate(PUNCT).split():
            i = _VOCAB.get(word)
            if i is None:      # unknown word: a stable hashed bucket, as subword-less tokenizers do
                i = 2 + sum(ord(c) * 31 ** k for k, c in enumerate(word)) % (VOCAB - 2)
            ids.append(i)
        ids = ids[:SEQ]
        out.append(ids + [0] * (SEQ - len(ids)))
    return out


class TextClassifier(nn.Module):
    def __init__(self, classes=8):
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 2, D)
        layer = nn.TransformerEncoderLayer(D, 8, 4 * D, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D, classes)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids)).mean(1))


def run_model(model, ids):
    with nvtx("model"):
        x = torch.tensor(ids, dtype=torch.long).pin_memory() if DEV == "cuda" else torch.tensor(ids)
        logits = model(x.to(DEV, non_blocking=True))
        return logits.float().argmax(-1).cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (tokenizing in worker processes)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    args = ap.parse_args()

    # the workers are forked before CUDA is initialised: they only run Python
    pool = mp.get_context("fork").Pool(WORKERS) if args.fixed or args.ab else None
    torch.manual_seed(0)
    model = TextClassifier().to(DEV).eval()
    if DEV == "cuda":
        model = model.half()

    def block(fixed, docs, timed_from):
        """Serve one request per entry of docs; -> seconds from request `timed_from` to the end."""
        ready = pool.imap(tokenize, docs) if fixed else None      # workers run ahead of the request thread
        t0 = None
        for i in range(len(docs)):
            if i == timed_from:
                if DEV == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with nvtx("classify"):
                if fixed:
                    ids = next(ready)
                else:
                    with nvtx("tokenize"):
                        ids = tokenize(docs[i])
                run_model(model, ids)
        if DEV == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        if args.ab:     # each block: one untimed request first, so the workers start ahead as in a single run
            block(False, [make_docs(i % 8) for i in range(args.warmup)], args.warmup - 1)
            ms = ab_rounds(lambda fixed: block(fixed, [make_docs(i % 8) for i in range(1 + args.requests)], 1)
                           / args.requests * 1e3, args.ab, mark=nvtx)
        else:     # each request's texts, as they arrive
            dt = block(args.fixed, [make_docs(i % 8) for i in range(args.warmup + args.requests)], args.warmup)
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    if pool:
        pool.close()
        pool.join()
    if args.ab:
        print(ab_line("tokenize_workers", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    print(f"tokenize_workers [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
