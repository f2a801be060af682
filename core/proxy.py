"""The proxy model: a Hugging Face causal LM with its tokenizer, or the offline `tiny-random`.

`load_proxy(name)` takes a hub name (default Qwen/Qwen2.5-0.5B-Instruct, optionally at a
pinned revision) or a local folder, and returns a `Proxy`: the model in eval mode on its
device (CUDA: bf16 weights; CPU: fp32), its tokenizer, an identity string that changes
whenever the weights or the chat template do, and `encode()`, which formats a record as
the paper does (docs/method.md section 2): a chat with user = prompt and assistant = response,
and a mask that keeps only the response tokens in the loss.

The reserved names `tiny-random` (Qwen2-style: attention biases, tied embeddings) and
`tiny-random-llama` (Llama-style: no biases, untied head) build a small random model with
a byte-level BPE tokenizer and a ChatML template, offline and deterministically. They
serve tests and trying the workflow; their scores mean nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from core.config import DEFAULT_PROXY
from core.errors import UserError

TINY_PROXIES = ("tiny-random", "tiny-random-llama")
TINY_VERSION = 2  # bump when tiny_random() or its tokenizer changes
NO_TEMPLATE_SEPARATOR = "\n\n"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_HINT = (
    "use a local model folder, or run with HF_HUB_OFFLINE=1 once the model is in the "
    "Hugging Face cache, or choose the proxy 'tiny-random' to try the workflow offline"
)


@dataclass(frozen=True)
class Encoded:
    """A tokenised sample: `ids`, and how many leading ids are prompt (no loss on them)."""

    ids: list[int]
    n_prompt: int
    truncated: bool


@dataclass
class Proxy:
    """A loaded proxy model. `is_random` marks the tiny test models (meaningless scores)."""

    name: str
    model: Any
    tokenizer: Any
    identity: str
    is_random: bool
    device: torch.device

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def encode(
        self, prompt: str, response: str, *, messages: list[dict] | None = None, max_length: int
    ) -> Encoded:
        """Token ids of the formatted sample and its prompt length, truncated to `max_length`.

        With a chat template: the conversation (user = prompt, assistant = response, or the
        record's own messages) and a loss on the final assistant turn only. Without one:
        prompt + "\\n\\n" + response (+ EOS).
        """
        tok = self.tokenizer
        if self.chat_template:
            turns = messages or [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": response},
            ]
            full = tok.apply_chat_template(turns, tokenize=False)
            head = tok.apply_chat_template(turns[:-1], tokenize=False, add_generation_prompt=True)
            if not full.startswith(
                head
            ):  # a template that rewrites earlier turns: split at the response
                head = full[: full.rfind(turns[-1]["content"])]
            prompt_ids = tok(head, add_special_tokens=False)["input_ids"]
            response_ids = tok(full[len(head) :], add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = tok(prompt + NO_TEMPLATE_SEPARATOR)["input_ids"]
            response_ids = tok(response, add_special_tokens=False)["input_ids"]
            if tok.eos_token_id is not None:
                response_ids = [*response_ids, tok.eos_token_id]
        return _truncate(prompt_ids, response_ids, max_length)


def _truncate(prompt_ids: list[int], response_ids: list[int], max_length: int) -> Encoded:
    """Cut to `max_length`: the response's end first; a prompt too long for any response
    keeps its last tokens, leaving room for up to half the length of response."""
    if len(prompt_ids) + len(response_ids) <= max_length:
        return Encoded(prompt_ids + response_ids, len(prompt_ids), False)
    keep_response = max(min(len(response_ids), max_length // 2), max_length - len(prompt_ids))
    keep_prompt = max_length - keep_response
    prompt_part = prompt_ids[len(prompt_ids) - keep_prompt :] if keep_prompt else []
    return Encoded(prompt_part + response_ids[:keep_response], keep_prompt, True)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is a UserError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            "device 'cuda' asked for, but PyTorch sees no CUDA GPU here; choose the device cpu or auto"
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserError(f"device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def load_proxy(
    name: str = DEFAULT_PROXY,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
) -> Proxy:
    """Load a proxy by hub name, local folder, or `tiny-random[-llama]`; see the module doc."""
    dev = resolve_device(device)
    if name in TINY_PROXIES:
        model, tokenizer = tiny_random("llama" if name.endswith("llama") else "qwen2")
        return Proxy(name, model.to(dev), tokenizer, proxy_identity(name), True, dev)
    return _load_pretrained(name, revision, trust_remote_code, dev)


def proxy_identity(name: str, revision: str | None = None) -> str:
    """What pins the proxy's numbers, found without loading it (for cache keys).

    tiny-random: the builder's version and torch's (its random weights); a local folder:
    a hash of its weight, config and tokenizer files; a hub name: the commit of the
    requested revision in the local Hugging Face cache, else the revision name.
    """
    if name in TINY_PROXIES:
        return f"{name}@builder{TINY_VERSION}-torch{torch.__version__}"
    local = Path(name).expanduser()
    if local.is_dir():
        return f"{local.resolve()}#{_folder_hash(local)}"
    return f"{name}@{_cached_commit(name, revision) or revision or 'main'}"


def _cached_commit(name: str, revision: str | None) -> str | None:
    """The commit a revision resolves to in the Hugging Face cache, if it is there."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    ref = Path(HF_HUB_CACHE) / f"models--{name.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def _load_pretrained(
    name: str, revision: str | None, trust_remote_code: bool, dev: torch.device
) -> Proxy:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from core import hub

    hub.quiet()
    local = Path(name).expanduser()
    where = str(local) if local.is_dir() else name
    # without the network, only the local Hugging Face cache, at once (no retries)
    offline = None if local.is_dir() else hub.unreachable()
    kwargs = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "local_files_only": bool(offline),
    }
    try:
        config = AutoConfig.from_pretrained(where, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UserError(
                f"proxy {name!r} runs its own code, which is allowed only from the command line "
                "(--trust-remote-code)"
            ) from e
        raise UserError(f"proxy {name!r}: {_first_line(e)}") from e
    except OSError as e:
        if offline:
            raise UserError(
                f"proxy {name!r}: cannot reach the Hugging Face hub ({offline}) and the model "
                f"is not in the local Hugging Face cache; {_HINT}"
            ) from e
        raise UserError(f"proxy {name!r} cannot be loaded ({_first_line(e)}); {_HINT}") from e
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    remote = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not remote:
        raise UserError(
            f"proxy {name!r} is not a causal language model ({config.model_type}); "
            "choose a decoder model such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(
            f"proxy {name!r} has no usable tokenizer ({_first_line(e)}); {_HINT}"
        ) from e
    if len(tokenizer) < 32:  # transformers makes an empty one when the files are missing
        raise UserError(f"proxy {name!r} has no usable tokenizer (no tokenizer files); {_HINT}")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(where, config=config, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(
            f"proxy {name!r}: the weights cannot be loaded ({_first_line(e)}); {_HINT}"
        ) from e
    model.to(dev).eval()
    return Proxy(name, model, tokenizer, proxy_identity(name, revision), False, dev)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _folder_hash(folder: Path) -> str:
    """A hash of a local model's weight and config files (content), cached per file version."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(folder.iterdir()):
        if path.suffix in (".safetensors", ".bin", ".json", ".model", ".txt") and path.is_file():
            st = path.stat()
            h.update(f"{path.name}:{_file_hash(str(path), st.st_size, st.st_mtime_ns)}".encode())
    return h.hexdigest()


@lru_cache(maxsize=256)
def _file_hash(
    path: str,
    size: int,  # noqa: ARG001 - with mtime_ns, the lru_cache key: a rewritten file is hashed again
    mtime_ns: int,  # noqa: ARG001 - see size
) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# --- the tiny random proxies ------------------------------------------------------------------


def _tiny_tokenizer() -> Any:
    """A Qwen2-style byte-level BPE tokenizer (1,024 tokens) trained on the text of the demo
    data file (core/demo.jsonl, in its order), with a ChatML template. Saved beside a Qwen2
    config it reloads identically. An edit of that file changes it: bump TINY_VERSION."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    from core.demo import all_rows

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((r["question"] + "\n" + r["answer"] for r in all_rows()), trainer)
    trained = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_random(
    kind: str = "qwen2", *, seed: int = 0, layers: int = 2, hidden: int = 64
) -> tuple[Any, Any]:
    """A small random causal LM ('qwen2' or 'llama') and its tokenizer, the same for a seed."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_tokenizer()
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if kind == "qwen2":
        config, cls = Qwen2Config(**common, tie_word_embeddings=True), Qwen2ForCausalLM
    elif kind == "llama":
        config, cls = LlamaConfig(**common, tie_word_embeddings=False), LlamaForCausalLM
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
        with torch.no_grad():  # norm weights start at 1 and biases at 0: perturb them too
            for p in model.parameters():
                if p.ndim == 1:
                    p.add_(0.1 * torch.randn(p.shape))
    return model.eval(), tokenizer


def proxy_facts(proxy: Proxy) -> dict[str, Any]:
    """What the UI and the CLI say about a proxy, including the random-model warning."""
    n = sum(p.numel() for p in proxy.model.parameters())
    facts = {
        "proxy": proxy.name,
        "parameters": n,
        "device": str(proxy.device),
        "identity": proxy.identity,
    }
    if proxy.is_random:
        facts["warning"] = (
            f"'{proxy.name}' is a tiny random model for trying the workflow: its scores are not meaningful"
        )
    return facts
