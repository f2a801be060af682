"""Speed and memory of the gradient features, as ratios against reference runs in this process.

1. factorized vs one plain training step (forward + backward with parameter gradients, no
   optimiser) on the same batch: time and peak memory;
2. factorized vs exact, time per sample.

Models: a Qwen2.5-0.5B-shaped model with random weights built from its published config
(no download), and tiny-random. Each sample has `--tokens` tokens, the last three quarters
of them the response.

    python bench/features_speed.py                      # both models, 256 tokens, batch 2
    python bench/features_speed.py --model tiny --batch 8
    python bench/features_speed.py --exact-fraction 0.02  # see below
    python bench/features_speed.py --quick              # tiny-random, 64 tokens: a check that it runs

The exact method's dense projection generates d x (number of parameters) random signs
per batch; for the 0.5B model that is 5e11 signs. By default it is timed on a fraction of
the parameter blocks and scaled up (the cost is linear in the parameters projected); the
per-sample backward it needs is always timed in full. `--exact-fraction 1` times it all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import gib, measure, parse_args
from core.config import FeatureConfig

# torch, transformers and core.gradients / core.proxy (which load them) are imported where
# they are used, so that `--help` and importing this file stay instant.

# Qwen/Qwen2.5-0.5B-Instruct's published config.json (the fields that shape the model)
QWEN_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def build(name: str):
    import torch

    from core.proxy import tiny_random

    if name == "tiny":
        model, _ = tiny_random("qwen2")
        return model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**QWEN_05B)).eval()


def make_batch(model, batch: int, tokens: int):
    import torch

    from core.gradients import collate
    from core.proxy import Encoded

    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    samples = [
        Encoded(torch.randint(3, vocab, (tokens,), generator=g).tolist(), tokens // 4, False)
        for _ in range(batch)
    ]
    return samples, collate(samples, pad_id=0)


def plain_step(model, batch) -> None:
    """One training step without the optimiser: forward, loss on the response, backward."""
    model.requires_grad_(True)
    labels = batch.input_ids.masked_fill(~batch.loss_mask.roll(1, dims=1), -100)
    model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels
    ).loss.backward()
    model.zero_grad(set_to_none=True)


def exact_per_sample(model, sample, config: FeatureConfig, fraction: float) -> tuple[float, float]:
    """(seconds for the sample's backward, seconds for its dense projection, scaled to all)."""
    import torch

    from core.gradients import EXACT_BLOCK_COLUMNS, collate, rademacher, response_losses

    one = collate([sample], pad_id=0)
    params = list(model.named_parameters())
    model.requires_grad_(True)
    t = time.perf_counter()
    grads = torch.autograd.grad(response_losses(model, one)[0], [p for _, p in params])
    backward = time.perf_counter() - t
    blocks = [
        (n, g, s)
        for (n, _), g in zip(params, grads, strict=True)
        for s in range(0, g.numel(), EXACT_BLOCK_COLUMNS)
    ]
    step = max(1, round(1 / fraction))
    timed = blocks[::step]
    t = time.perf_counter()
    out = torch.zeros(config.dim)
    for name, g, start in timed:
        flat = g.reshape(-1)[start : start + EXACT_BLOCK_COLUMNS]
        out += rademacher(config.dim, flat.numel(), seed=0, stream=f"exact/{name}/{start}") @ flat
    projection = (time.perf_counter() - t) * len(blocks) / len(timed)
    model.zero_grad(set_to_none=True)
    return backward, projection


def run(name: str, batch_size: int, tokens: int, rank: int, fraction: float) -> None:
    import torch

    from core.gradients import FactorizedFeaturizer

    t = time.perf_counter()
    model = build(name)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"\n== {name}: {n_params / 1e6:.1f}M parameters, batch {batch_size} x {tokens} tokens, "
        f"rank {rank}, {torch.get_num_threads()} threads (built in {time.perf_counter() - t:.0f} s)"
    )
    samples, batch = make_batch(model, batch_size, tokens)
    config = FeatureConfig(rank=rank)

    plain = measure(lambda: plain_step(model, batch), repeat=2)
    featurizer = FactorizedFeaturizer(model, config)
    factorized = measure(lambda: featurizer(batch), repeat=2)
    print(
        f"plain step (fwd+bwd, param grads): {plain.seconds:7.2f} s   peak {gib(plain.peak_bytes)} "
        f"(+{gib(plain.extra_bytes)} over the loaded model)"
    )
    print(
        f"factorized features:               {factorized.seconds:7.2f} s   peak {gib(factorized.peak_bytes)} "
        f"(+{gib(factorized.extra_bytes)})"
    )
    print(
        f"  time ratio factorized / plain step:        {factorized.seconds / plain.seconds:.2f}x  (target <= 1.3x)"
    )
    print(
        f"  peak memory ratio factorized / plain step: {factorized.peak_bytes / plain.peak_bytes:.2f}x  "
        f"(target <= 1.5x; extra over the model: {factorized.extra_bytes / max(plain.extra_bytes, 1):.2f}x)"
    )

    backward, projection = exact_per_sample(
        model, samples[0], FeatureConfig(method="exact"), fraction
    )
    exact = backward + projection
    per_sample = factorized.seconds / batch_size
    scaled = (
        ""
        if fraction >= 1
        else f", projection timed on {fraction:.0%} of the parameter blocks and scaled"
    )
    print(
        f"exact, per sample: {exact:.2f} s (backward {backward:.2f} s + dense projection {projection:.2f} s{scaled})"
    )
    print(f"factorized, per sample: {per_sample:.3f} s")
    print(f"  speed-up factorized vs exact per sample: {exact / per_sample:.0f}x  (target >= 10x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["qwen0.5b", "tiny", "both"], default="both")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rank", type=int, default=FeatureConfig().rank)
    parser.add_argument(
        "--exact-fraction",
        type=float,
        default=None,
        help="fraction of parameter blocks the exact projection is timed on (default: 0.02 for 0.5B, 1 for tiny)",
    )
    args = parse_args(parser, {"model": "tiny", "tokens": 64}, argv)
    for name in ["tiny", "qwen0.5b"] if args.model == "both" else [args.model]:
        fraction = args.exact_fraction or (1.0 if name == "tiny" else 0.02)
        run(name, args.batch, args.tokens, args.rank, fraction)


if __name__ == "__main__":
    main()
