"""Per-sample gradient features of a proxy causal LM (docs/method.md section 2).

For sample i with response-only mean loss L_i, g_i is the gradient of L_i over all proxy
parameters. Two ways to project it to `dim` numbers:

- `exact` (the paper's reference): g_i from a batch-of-one backward, then R g_i / sqrt(d)
  with R a seeded Rademacher matrix generated block by block, never whole.
- `factorized` (the default): one batched forward/backward with hooks. For each weight
  matrix W (out x in), whose per-sample gradient is G = sum_t delta_t x_t^T, the hooks
  form (P_out G P_in^T) = sum_t (P_out delta_t)(P_in x_t)^T, K x K, from two small
  per-token projections (P_out, P_in: seeded Rademacher / sqrt(K)); G itself, and any
  parameter .grad, is never formed. Embedding rows (their gradient is
  sum_t onehot(token_t) delta_t^T) use the same form, sharing the block with a tied LM
  head. Vector parameters (biases, norm weights) are small and kept whole. All blocks
  together go through a final seeded projection to d: a CountSketch, which keeps inner
  products in expectation like a dense Rademacher / sqrt(d) and measured as faithful
  here, without a d x (sum of block sizes) matrix in memory.
  The result equals the exact gradient's Kronecker projection, for any batch and padding.

Both methods give features with E[<phi_i, phi_j>] = <g_i, g_j>. Inputs are `Batch`es of
encoded samples (see `collate`); outputs are float32 tensors of shape (batch, dim).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.config import METHODS, FeatureConfig
from core.proxy import Encoded

# --- batches ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Padded token ids; `loss_mask[b, t]` is True where position t predicts a response token."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 for real tokens
    position_ids: torch.Tensor  # (B, T) long, counted over real tokens only
    loss_mask: torch.Tensor  # (B, T) bool

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in _fields(self)))


def collate(samples: Sequence[Encoded], *, pad_id: int, side: str = "right") -> Batch:
    """Pad encoded samples to one length, on the right (default) or the left."""
    length = max(len(s.ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    loss = torch.zeros((len(samples), length), dtype=torch.bool)
    for b, s in enumerate(samples):
        n = len(s.ids)
        start = length - n if side == "left" else 0
        ids[b, start : start + n] = torch.tensor(s.ids)
        mask[b, start : start + n] = 1
        # position t predicts token t + 1: the positions before each response token
        loss[b, start + max(s.n_prompt, 1) - 1 : start + n - 1] = True
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return Batch(ids, mask, positions, loss)


def response_losses(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Per-sample mean cross-entropy over response tokens, shape (B,), in float32.
    The LM head runs only on the positions that carry a loss."""
    hidden = decoder_hidden(model, batch)
    rows, cols = batch.loss_mask.nonzero(as_tuple=True)
    logits = model.get_output_embeddings()(hidden[rows, cols])
    targets = batch.input_ids[rows, cols + 1]
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    counts = batch.loss_mask.sum(1).clamp(min=1).float()
    return torch.zeros(batch.size, device=nll.device).index_add(0, rows, nll) / counts


def decoder_hidden(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The last hidden state of the model's decoder (everything before the LM head)."""
    out = model.get_decoder()(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    return out.last_hidden_state


# --- seeded Rademacher matrices -----------------------------------------------------------------


def _generator(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per (seed, stream name), the same on every machine."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


def rademacher(
    rows: int, cols: int, *, seed: int, stream: str, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A (rows x cols) float32 matrix of +-1, the same for (seed, stream) on any device."""
    n = rows * cols
    bits = np.unpackbits(_generator(seed, stream).integers(0, 256, (n + 7) // 8, dtype=np.uint8))[
        :n
    ]
    signs = torch.from_numpy(bits.reshape(rows, cols)).to(device)
    return signs.float().mul_(2).sub_(1)


def count_sketch(
    size: int, dim: int, *, seed: int, stream: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded sparse projection of `size` entries to `dim`: each entry adds, with a random
    sign, to one random output (CountSketch). It keeps inner products in expectation, like a
    dense Rademacher / sqrt(dim), for a fraction of the memory. Returns (bucket, sign)."""
    rng = _generator(seed, stream)
    bucket = torch.from_numpy(rng.integers(0, dim, size))
    sign = torch.from_numpy(rng.integers(0, 2, size).astype(np.float32) * 2 - 1)
    return bucket, sign


# --- the exact reference ------------------------------------------------------------------------

EXACT_BLOCK_COLUMNS = 1 << 15


def exact_features(model: nn.Module, batch: Batch, config: FeatureConfig) -> torch.Tensor:
    """The paper's reference: per-sample full gradient, dense Rademacher projection / sqrt(d).

    Each sample runs alone (batch of one, no padding); the generated blocks of R are shared
    by the samples of `batch`.
    """
    params = list(model.named_parameters())
    device = batch.input_ids.device
    grads = []
    for b in range(batch.size):
        keep = batch.attention_mask[b].bool()
        one = Batch(*(t[b : b + 1, keep] for t in _fields(batch)))
        with _grads_on(model), torch.enable_grad():
            loss = response_losses(model, one)[0]
            grads.append(torch.autograd.grad(loss, [p for _, p in params]))
    out = torch.zeros(batch.size, config.dim, device=device)
    for i, (name, p) in enumerate(params):
        flat = torch.stack([g[i].reshape(-1).float() for g in grads])  # (B, numel)
        for start in range(0, p.numel(), EXACT_BLOCK_COLUMNS):
            stop = min(start + EXACT_BLOCK_COLUMNS, p.numel())
            r = rademacher(
                config.dim,
                stop - start,
                seed=config.seed,
                stream=f"exact/{name}/{start}",
                device=device,
            )
            out += flat[:, start:stop] @ r.T
    return out / math.sqrt(config.dim)


class _grads_on:
    """Make every parameter require grad inside the block, as it was outside."""

    def __init__(self, model: nn.Module):
        self.params = list(model.parameters())

    def __enter__(self) -> None:
        self.before = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(True)

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.params, self.before, strict=True):
            p.requires_grad_(flag)


def _fields(batch: Batch) -> tuple[torch.Tensor, ...]:
    return batch.input_ids, batch.attention_mask, batch.position_ids, batch.loss_mask


def exact_projection_matrix(model: nn.Module, config: FeatureConfig) -> torch.Tensor:
    """The whole (dim x n_params) matrix R of `exact_features`, for tests on tiny models."""
    blocks = []
    for name, p in model.named_parameters():
        for start in range(0, p.numel(), EXACT_BLOCK_COLUMNS):
            stop = min(start + EXACT_BLOCK_COLUMNS, p.numel())
            blocks.append(
                rademacher(
                    config.dim, stop - start, seed=config.seed, stream=f"exact/{name}/{start}"
                )
            )
    return torch.cat(blocks, dim=1)


# --- the factorised method ----------------------------------------------------------------------


@dataclass
class Block:
    """One piece of the concatenated sketch: a K x K matrix block or a whole vector."""

    name: str
    size: int
    out_proj: torch.Tensor | None = None  # (K, out) / sqrt(K), for matrix blocks; None: identity
    in_proj: torch.Tensor | None = None  # (K, in) / sqrt(K); None: identity
    bucket: torch.Tensor | None = field(default=None, repr=False)  # (size,) output index per entry
    sign: torch.Tensor | None = field(default=None, repr=False)  # (size,) +-1


class FactorizedFeaturizer:
    """Hooks a model once; `__call__(batch)` gives (B, dim) features in one forward/backward.

    Covered: every nn.Linear (weights, biases), every nn.Embedding (its input use; a tied LM
    head shares the block), RMSNorm-style and LayerNorm weights and biases. Anything else is
    listed in `uncovered` (parameter names) and left out.
    """

    def __init__(self, model: nn.Module, config: FeatureConfig):
        self.model, self.config = model, config
        self.device = next(model.parameters()).device
        model.requires_grad_(False)  # gradients flow through activations only
        self.blocks: dict[str, Block] = {}
        names = {id(p): n for n, p in model.named_parameters()}  # canonical names; tied params once
        covered: set[int] = set()
        self._sites: list[tuple[nn.Module, Callable]] = []
        for module in model.modules():
            if isinstance(module, nn.Linear):
                self._matrix_block(
                    names[id(module.weight)], module.out_features, module.in_features
                )
                hook = self._linear_hook(names[id(module.weight)], names.get(id(module.bias)))
            elif isinstance(module, nn.Embedding):
                self._matrix_block(
                    names[id(module.weight)], module.num_embeddings, module.embedding_dim
                )
                hook = self._embedding_hook(names[id(module.weight)], module.padding_idx)
            elif _norm_kind(module):
                hook = self._norm_hook(module, names)
            else:
                continue
            for p in module.parameters(recurse=False):
                covered.add(id(p))
                if p.ndim == 1:
                    self.blocks.setdefault(names[id(p)], Block(names[id(p)], p.numel()))
            self._sites.append((module, hook))
        self.uncovered = [n for n, p in model.named_parameters() if id(p) not in covered]
        for block in self.blocks.values():
            block.bucket, block.sign = count_sketch(
                block.size, config.dim, seed=config.seed, stream=f"final/{block.name}"
            )
            block.bucket, block.sign = block.bucket.to(self.device), block.sign.to(self.device)
        self._acc: dict[str, torch.Tensor] = {}
        self._batch: Batch | None = None
        self.max_batch = None

    @property
    def sketch_size(self) -> int:
        """Length of the concatenated blocks before the final projection."""
        return sum(b.size for b in self.blocks.values())

    def _matrix_block(self, name: str, rows: int, cols: int) -> None:
        """P_out (k x rows) and P_in (k x cols), k = min(rank, side): a side no longer than
        the rank is kept whole (P = identity, stored as None), the rest is sketched."""
        if name in self.blocks:
            return
        k, seed = self.config.rank, self.config.seed

        def side(n: int, stream: str) -> tuple[torch.Tensor | None, int]:
            if n <= k:
                return None, n
            return rademacher(k, n, seed=seed, stream=stream, device=self.device) / math.sqrt(k), k

        out_proj, k_out = side(rows, f"out/{name}")
        in_proj, k_in = side(cols, f"in/{name}")
        self.blocks[name] = Block(name, k_out * k_in, out_proj, in_proj)

    # each hook sees the current batch's real-token mask; token rows may be (B, T, ...) or,
    # for the LM head that runs on loss positions only, (N, ...) with their sample index

    def _token_layout(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mask over real tokens, sample index per row or None) for an activation `x`."""
        batch = self._batch
        if x.dim() == 3:
            return batch.attention_mask.bool(), None
        rows, _ = batch.loss_mask.nonzero(as_tuple=True)
        return torch.ones(rows.shape[0], dtype=torch.bool, device=x.device), rows

    def _add(
        self, name: str, per_row: torch.Tensor, mask: torch.Tensor, sample: torch.Tensor | None
    ) -> None:
        """Sum per-token values (rows x size) into each sample's accumulator for `name`."""
        per_row = torch.where(mask.unsqueeze(-1), per_row, 0.0)
        if sample is None:
            summed = per_row.sum(1)
        else:
            summed = torch.zeros(
                self._batch.size, per_row.shape[-1], device=per_row.device
            ).index_add(0, sample, per_row)
        self._acc[name] = self._acc.get(name, 0) + summed

    def _add_outer(
        self, name: str, left: torch.Tensor, right: torch.Tensor, mask: torch.Tensor, sample
    ) -> None:
        """Sum per-token outer products left_t right_t^T (K x K) into sample accumulators."""
        m = mask.unsqueeze(-1)
        left, right = torch.where(m, left, 0.0), torch.where(m, right, 0.0)
        if sample is None:
            summed = torch.einsum("btk,btj->bkj", left, right)
        else:
            outer = left.unsqueeze(-1) * right.unsqueeze(-2)
            summed = torch.zeros(self._batch.size, *outer.shape[1:], device=outer.device).index_add(
                0, sample, outer
            )
        self._acc[name] = self._acc.get(name, 0) + summed.flatten(1)

    def _linear_hook(self, weight: str, bias: str | None) -> Callable:
        block = self.blocks[weight]

        def forward_hook(_module, args, output):
            x = args[0]
            mask, sample = self._token_layout(x)
            x_proj = _apply(block.in_proj, x.float())

            def on_grad(grad):
                self._add_outer(weight, _apply(block.out_proj, grad.float()), x_proj, mask, sample)
                if bias:
                    self._add(bias, grad.float(), mask, sample)

            if output.requires_grad:
                output.register_hook(on_grad)

        return forward_hook

    def _embedding_hook(self, weight: str, padding_idx: int | None) -> Callable:
        block = self.blocks[weight]

        def forward_hook(module, args, output):
            ids = args[0]
            mask, sample = self._token_layout(output)
            if padding_idx is not None:  # the padding row gets no gradient in nn.Embedding
                mask = mask & (ids != padding_idx)
            # P_out onehot(token) is a column of P_out (of the identity when not sketched)
            if block.out_proj is None:
                rows = torch.nn.functional.one_hot(ids, module.num_embeddings).float()
            else:
                rows = block.out_proj.T[ids]
            leaf = output.detach().requires_grad_(True)  # the root of the backward pass
            leaf.register_hook(
                lambda grad: self._add_outer(
                    weight, rows, _apply(block.in_proj, grad.float()), mask, sample
                )
            )
            return leaf

        return forward_hook

    def _norm_hook(self, module: nn.Module, names: dict[int, str]) -> Callable:
        kind = _norm_kind(module)
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
        weight = names.get(id(getattr(module, "weight", None)))
        bias = names.get(id(getattr(module, "bias", None)))

        def forward_hook(_module, args, output):
            x = args[0]
            mask, sample = self._token_layout(x)

            def on_grad(grad):
                xf, g = x.detach().float(), grad.float()
                if kind == "rms":
                    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
                else:
                    normed = torch.nn.functional.layer_norm(xf, xf.shape[-1:], eps=eps)
                if weight:
                    self._add(weight, g * normed, mask, sample)
                if bias:
                    self._add(bias, g, mask, sample)

            if output.requires_grad:
                output.register_hook(on_grad)

        return forward_hook

    def sketch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample blocks before the final projection: name -> (B, size). For tests."""
        self._acc, self._batch = {}, batch
        handles = [m.register_forward_hook(h) for m, h in self._sites]
        try:
            with torch.enable_grad():
                losses = response_losses(self.model, batch)
                losses.sum().backward()  # samples are independent: each gets its own gradient
            acc = self._acc
        finally:
            for h in handles:
                h.remove()
            self._acc, self._batch = {}, None
        return {
            name: acc.get(name, torch.zeros(batch.size, b.size, device=self.device))
            for name, b in self.blocks.items()
        }

    def project(self, sketch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The final projection of per-sample blocks (name -> (B, size)) to (B, dim)."""
        first = next(iter(sketch.values()))
        out = torch.zeros(first.shape[0], self.config.dim, device=first.device, dtype=first.dtype)
        for name, values in sketch.items():
            block = self.blocks[name]
            out.index_add_(1, block.bucket, values * block.sign.to(values.dtype))
        return out

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.project(self.sketch(batch))


def _apply(projection: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x @ projection^T over the last dimension; None is the identity."""
    return x if projection is None else x @ projection.T


def _norm_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        return "layer"
    weight = getattr(module, "weight", None)
    if "RMSNorm" in type(module).__name__ and isinstance(weight, nn.Parameter) and weight.ndim == 1:
        return "rms"
    return None


class ExactFeaturizer:
    """`exact_features` with the interface of FactorizedFeaturizer."""

    def __init__(self, model: nn.Module, config: FeatureConfig):
        self.model, self.config, self.uncovered = model, config, []
        n_params = sum(p.numel() for p in model.parameters())
        self.max_batch = max(1, 2**31 // (4 * n_params))  # the batch's gradients stay under 2 GB

    def __call__(self, batch: Batch) -> torch.Tensor:
        return exact_features(self.model, batch, self.config)


def featurizer(model: nn.Module, config: FeatureConfig) -> FactorizedFeaturizer | ExactFeaturizer:
    """The feature function of `config.method` for `model`: call it on a Batch."""
    if config.method == "exact":
        return ExactFeaturizer(model, config)
    if config.method == "factorized":
        return FactorizedFeaturizer(model, config)
    raise ValueError(f"unknown method {config.method!r}; use one of {METHODS}")
