"""Range layout: an LLM-style decode annotated layer by layer, with no NVTX range around a request or a token.

    python3 examples/llm_layer_ranges.py       # (only this form: it tests which range a tool takes as the unit)

A small decoder-only language model (8 layers, width 1024, fp16, a KV cache) serves 12 requests: each is a prompt of
64 tokens (prefill) followed by 24 greedily decoded tokens. The code is annotated the way per-layer instrumentation
(a framework's hooks, a profiler integration) often leaves it: NVTX ranges `embed`, `layer.0` ... `layer.7`,
`lm_head` and `sample`, siblings on one thread, repeated once per forward pass (once per token in decode), and
nothing that encloses a request or one step.

WHAT IT SHOWS
    Every range name repeats 12 x 25 times (the prefill and 24 decode steps of every request) and encloses GPU work,
    so each one alone looks like a request, but any one of them measures only a slice of a step: a `layer.3` range is
    1/8 of the model and leaves out sampling, which is where the per-token synchronisation is (`sample` reads the
    chosen token with `.item()`, to check for end of sequence). The unit that means something is the step: the
    consecutive siblings from `embed` to `sample`; and the request is the run of steps between two idle gaps
    (the host prepares the next prompt for ~2 ms between requests, outside any range).

Timing printed: the program's own time per request (prefill + 24 tokens) and per decoded token.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
VOCAB, D, HEADS, LAYERS, PROMPT, NEW = (32000, 1024, 16, 8, 64, 24) if not SMOKE else (128, 32, 4, 2, 8, 4)
EOS = -1                                            # never produced: every request decodes NEW tokens


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x, cache):
        """x: (T, D) new positions; cache: [k, v] of shape (HEADS, past, D/HEADS) or None. Returns x, new cache."""
        t = x.shape[0]
        q, k, v = self.qkv(self.n1(x)).view(t, 3, HEADS, D // HEADS).unbind(1)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)     # (HEADS, T, hd)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 1), torch.cat([cache[1], v], 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        x = x + self.out(a.transpose(0, 1).reshape(t, D))
        x = x + self.fc2(F.gelu(self.fc1(self.n2(x))))
        return x, (k, v)


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)

    def step(self, tokens, caches):
        """One forward pass over `tokens` (prefill: the prompt; decode: the last token), with per-layer ranges."""
        with nvtx("embed"):
            x = self.embed(tokens)
        new = []
        for i, layer in enumerate(self.layers):
            with nvtx(f"layer.{i}"):
                x, c = layer(x, caches[i] if caches else None)
                new.append(c)
        with nvtx("lm_head"):
            logits = self.head(self.norm(x[-1:]))
        with nvtx("sample"):
            tok = logits.argmax(-1)
            done = tok.item() == EOS                # the per-token sync: the host checks for end of sequence
        return tok, new, done


def generate(model, prompt):
    tok, caches, done = model.step(prompt, None)    # prefill
    out = [tok]
    for _ in range(NEW):
        if done:
            break
        tok, caches, done = model.step(tok, caches)
        out.append(tok)
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = LM().to(DEV).half().eval()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        def request():
            prompt = torch.randint(0, VOCAB, (PROMPT,), generator=g)   # "tokenise": host work between requests
            time.sleep(0.002)
            return generate(model, prompt.to(DEV))
        for _ in range(args.warmup):
            request()
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.requests):
            request()
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    print(f"llm_layer_ranges: {args.requests} requests in {dt:.3f}s ({dt / args.requests * 1e3:.2f} ms/request, "
          f"{dt / (args.requests * NEW) * 1e3:.2f} ms/token incl. prefill); "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
