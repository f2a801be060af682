"""Fidelity of the factorized features to the exact ones, on real samples.

For each proxy: the true per-sample gradients (all parameters, computed whole: the models
here are small enough), the exact method (dense Rademacher, d = 1024) and the factorized
method at its defaults. Printed: Pearson correlation of all pairwise cosines between
methods, and G-Vendi with its relative difference.

Samples: the first N of gsm8k train from ../shared/data when present, else the demo set.
Proxies: tiny-random (2 layers, hidden 64: every linear layer is smaller than the sketch
rank, so only the embedding is sketched), and `small`, a random Qwen2-style model with
4 layers and hidden 256 where every weight matrix is sketched.

    python bench/features_fidelity.py [--samples 256] [--proxies tiny,small] [--quick]

It prints the README's table (tiny is tiny-random).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import SHARED_DATA, parse_args
from core.config import FeatureConfig
from core.demo import all_rows
from core.vendi import g_vendi, kernel_eigenvalues, vendi

# torch and core.gradients / core.proxy (which load it) are imported where they are used,
# so that `--help` and importing this file stay instant.

GSM8K = SHARED_DATA / "gsm8k" / "train.jsonl"
PROXIES = {"tiny": "tiny-random", "small": "small"}  # --proxies name: the table's label


def samples(n: int) -> tuple[str, list[tuple[str, str]]]:
    if GSM8K.exists():
        rows = [json.loads(line) for line in GSM8K.open()][:n]
        return "gsm8k train", [(r["question"], r["answer"]) for r in rows]
    return "demo", [(r["question"], r["answer"]) for r in all_rows()[:n]]  # at most 360


def batches(encoded, size: int = 32):
    from core.gradients import collate

    for i in range(0, len(encoded), size):
        yield collate(encoded[i : i + size], pad_id=0)


def true_gradients(model, encoded) -> np.ndarray:
    """N x (all parameters): each sample's whole gradient of its response loss."""
    import torch

    from core.gradients import collate, response_losses

    model.requires_grad_(True)
    out = []
    for e in encoded:
        loss = response_losses(model, collate([e], pad_id=0))[0]
        grads = torch.autograd.grad(loss, list(model.parameters()))
        out.append(torch.cat([g.flatten() for g in grads]).numpy())
    model.requires_grad_(False)
    return np.stack(out)


def cosines(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return (u @ u.T)[np.triu_indices(len(u), 1)]


def run(label: str, model, tokenizer, data: list[tuple[str, str]]) -> dict:
    import torch

    from core.gradients import ExactFeaturizer, FactorizedFeaturizer
    from core.proxy import Proxy

    proxy = Proxy(label, model, tokenizer, label, True, torch.device("cpu"))
    encoded = [proxy.encode(p, r, max_length=512) for p, r in data]
    n_params = sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    truth = true_gradients(model, encoded)
    exact_fn = ExactFeaturizer(model, FeatureConfig(method="exact"))
    exact = np.concatenate([exact_fn(b).numpy() for b in batches(encoded)])
    t_exact = time.perf_counter() - t
    fact_fn = FactorizedFeaturizer(model, FeatureConfig())
    t = time.perf_counter()
    fact = np.concatenate([fact_fn(b).numpy() for b in batches(encoded)])
    t_fact = time.perf_counter() - t
    c_truth, c_exact, c_fact = cosines(truth), cosines(exact), cosines(fact)
    # truth is N x (all parameters): its spectrum through the N x N cosine kernel
    gv = {
        "truth": vendi(kernel_eigenvalues(truth)),
        "exact": g_vendi(exact),
        "factorized": g_vendi(fact),
    }
    return {
        "proxy": label,
        "parameters": n_params,
        "sketch": fact_fn.sketch_size,
        "pearson_fact_exact": float(np.corrcoef(c_fact, c_exact)[0, 1]),
        "pearson_fact_truth": float(np.corrcoef(c_fact, c_truth)[0, 1]),
        "pearson_exact_truth": float(np.corrcoef(c_exact, c_truth)[0, 1]),
        "gvendi": gv,
        "seconds": {"truth+exact": t_exact, "factorized": t_fact},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--proxies", default="tiny,small", help="comma-separated: tiny, small")
    args = parse_args(parser, {"samples": 8, "proxies": "tiny"}, argv)
    names = args.proxies.split(",")
    if unknown := [n for n in names if n not in PROXIES]:
        parser.error(f"--proxies: unknown {', '.join(unknown)}; use tiny, small")
    from core.proxy import tiny_random

    source, data = samples(args.samples)
    print(f"{len(data)} samples from {source}; factorized at its defaults {FeatureConfig()}\n")
    print(
        "| proxy | Pearson of pairwise cosines, factorized vs exact | factorized vs truth "
        "| exact vs truth | G-Vendi truth / exact / factorized | factorized vs exact |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    notes = []
    for name in names:
        model, tokenizer = (
            tiny_random("qwen2") if name == "tiny" else tiny_random("qwen2", layers=4, hidden=256)
        )
        r = run(name, model, tokenizer, data)
        g = r["gvendi"]
        print(
            f"| {PROXIES[name]} | {r['pearson_fact_exact']:.3f} | {r['pearson_fact_truth']:.3f} "
            f"| {r['pearson_exact_truth']:.3f} "
            f"| {g['truth']:.2f} / {g['exact']:.2f} / {g['factorized']:.2f} "
            f"| {(g['factorized'] - g['exact']) / g['exact']:+.1%} |"
        )
        seconds = r["seconds"]
        notes.append(
            f"{PROXIES[name]}: {r['parameters'] / 1e6:.2f}M parameters, sketch of "
            f"{r['sketch']:,} entries; truth + exact {seconds['truth+exact']:.0f} s, "
            f"factorized {seconds['factorized']:.1f} s"
        )
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
