"""The gradient features are what docs/method.md (section 2) says they are, checked against autograd.

- factorized == the Kronecker projection of autograd's per-sample weight gradients, for a
  batch of one and for mixed-length padded batches (right and left padding), on a Qwen2-
  style (biases, tied head) and a Llama-style (untied head) model;
- only response tokens are in the loss; padding changes nothing;
- exact == a dense projection of the autograd gradient, R g / sqrt(d).
"""

from __future__ import annotations

import math

import pytest
import torch

from core.config import FeatureConfig
from core.gradients import (
    FactorizedFeaturizer,
    collate,
    exact_features,
    exact_projection_matrix,
)
from core.proxy import tiny_random

TEXTS = [
    ("What is 7 times 8?", "7 x 8 = 56. The answer is \\boxed{56}."),
    (
        "A train travels 120 km in 2 hours. What is its speed in km/h?",
        "120 / 2 = 60 km/h. \\boxed{60}",
    ),
    ("Is 91 prime?", "No: 91 = 7 x 13. \\boxed{no}"),
    ("Sum 1..10?", "55"),
]


class Tiny:
    def __init__(self, kind: str):
        model, tok = tiny_random(kind)
        self.model, self.tok = model, tok
        from core.proxy import Proxy

        self.proxy = Proxy("tiny", self.model, tok, "x", True, torch.device("cpu"))

    def encoded(self, texts=TEXTS):
        return [self.proxy.encode(p, r, max_length=256) for p, r in texts]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tiny(request) -> Tiny:
    return Tiny(request.param)


def autograd_grads(model, encoded) -> dict[str, torch.Tensor]:
    """The true per-sample gradient of the response-only mean loss, through HF's own loss."""
    ids = torch.tensor([encoded.ids])
    labels = ids.clone()
    labels[0, : encoded.n_prompt] = -100
    model.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=labels).loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)
    return grads


def kronecker_reference(
    featurizer: FactorizedFeaturizer, grads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out = {}
    for name, block in featurizer.blocks.items():
        g = grads[name]
        if g.ndim == 2:
            left = block.out_proj if block.out_proj is not None else torch.eye(g.shape[0])
            right = block.in_proj if block.in_proj is not None else torch.eye(g.shape[1])
            g = (left @ g @ right.T).flatten()
        out[name] = g
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("side", ["right", "left"])
def test_factorized_equals_the_kronecker_projection(tiny, side):
    config = FeatureConfig(dim=64, rank=8)
    f = FactorizedFeaturizer(tiny.model, config)
    assert f.uncovered == []  # every parameter is in the sketch
    encoded = tiny.encoded()
    assert len({len(e.ids) for e in encoded}) == len(encoded)  # mixed lengths: padding happens
    batch = collate(encoded, pad_id=tiny.tok.pad_token_id, side=side)
    sketch = f.sketch(batch)
    features = f(batch)
    for i, e in enumerate(encoded):
        reference = kronecker_reference(f, autograd_grads(tiny.model, e))
        for name, ref in reference.items():
            assert rel(sketch[name][i], ref) < 1e-4, (name, rel(sketch[name][i], ref))
        expected = f.project({n: ref.unsqueeze(0) for n, ref in reference.items()})[0]
        assert rel(features[i], expected) < 1e-4


def test_batch_of_one_equals_padded_batch(tiny):
    f = FactorizedFeaturizer(tiny.model, FeatureConfig(dim=64, rank=8))
    encoded = tiny.encoded()
    together = f(collate(encoded, pad_id=tiny.tok.pad_token_id))
    alone = torch.cat([f(collate([e], pad_id=tiny.tok.pad_token_id)) for e in encoded])
    assert rel(together, alone) < 1e-6


def test_prompt_tokens_are_not_in_the_loss(tiny):
    """Moving the prompt/response boundary changes features; the pad id does not."""
    f = FactorizedFeaturizer(tiny.model, FeatureConfig(dim=64, rank=8))
    e = tiny.encoded()[1]
    pad = tiny.tok.pad_token_id
    base = f(collate([e], pad_id=pad))
    from core.proxy import Encoded

    whole = Encoded(e.ids, 1, False)  # loss on the prompt too: a different gradient
    assert rel(f(collate([whole], pad_id=pad)), base) > 0.05
    # the features match autograd's response-only loss (prompt labels masked)
    ref = kronecker_reference(f, autograd_grads(tiny.model, e))
    expected = f.project({n: v.unsqueeze(0) for n, v in ref.items()})[0]
    assert rel(base[0], expected) < 1e-4
    # padding with another token id, on either side, changes nothing
    other = collate([e, tiny.encoded()[0]], pad_id=5, side="left")
    assert rel(f(other)[0], base[0]) < 1e-6


def test_exact_equals_dense_projection(tiny):
    config = FeatureConfig(method="exact", dim=32)
    encoded = tiny.encoded()[:3]
    batch = collate(encoded, pad_id=tiny.tok.pad_token_id)
    got = exact_features(tiny.model, batch, config)
    r = exact_projection_matrix(tiny.model, config)
    for i, e in enumerate(encoded):
        g = torch.cat([v.flatten() for v in autograd_grads(tiny.model, e).values()])
        assert rel(got[i], r @ g / math.sqrt(config.dim)) < 1e-5


def test_features_are_deterministic_for_a_seed(tiny):
    encoded = tiny.encoded()
    batch = collate(encoded, pad_id=tiny.tok.pad_token_id)
    a = FactorizedFeaturizer(tiny.model, FeatureConfig(dim=64, rank=8, seed=3))(batch)
    b = FactorizedFeaturizer(tiny.model, FeatureConfig(dim=64, rank=8, seed=3))(batch)
    c = FactorizedFeaturizer(tiny.model, FeatureConfig(dim=64, rank=8, seed=4))(batch)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_factorized_stays_close_to_exact_on_real_text():
    """A loose pin of the fidelity benchmark (bench/features_fidelity.py prints the figures):
    on 48 demo problems and a proxy where every weight matrix is sketched, the pairwise
    cosines of factorized and exact features correlate and G-Vendi agrees within 10%."""
    import numpy as np

    from core.demo import demo_rows
    from core.gradients import ExactFeaturizer
    from core.proxy import Proxy
    from core.vendi import g_vendi

    model, tok = tiny_random("qwen2", layers=2, hidden=192)  # sides of 192 and 384 > rank 128
    proxy = Proxy("small", model, tok, "small", True, torch.device("cpu"))
    rows = demo_rows(48)
    batch = collate(
        [proxy.encode(r["question"], r["answer"], max_length=256) for r in rows], pad_id=0
    )
    fact = FactorizedFeaturizer(model, FeatureConfig()).__call__(batch).numpy()
    exact = ExactFeaturizer(model, FeatureConfig(method="exact"))(batch).numpy()

    def cosines(x):
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        return (u @ u.T)[np.triu_indices(len(u), 1)]

    assert np.corrcoef(cosines(fact), cosines(exact))[0, 1] > 0.85
    assert abs(g_vendi(fact) / g_vendi(exact) - 1) < 0.10
