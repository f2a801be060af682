"""Normalised records: field mapping, validation report, and the records' Parquet form.

A `Mapping` says where a record's prompt and response come from: each a field name, a
dotted path (`meta.question`) or a template over several fields (`"{Body} {Question}"`,
doubled braces are literal, `\\n` is a newline); or a chat `messages` field instead.
`stage()` streams a `Source` through the mapping into a Parquet file of records and
returns a `Report`: rows read, kept, skipped (with reasons and where), duplicates and
length statistics. Rendering of non-text values is fixed and documented in
`render_value`.

Record columns: id, prompt, response, messages (JSON list of {role, content} or null),
source ("seed" or "synthetic"), origin_file, origin_row (the row's number in its file),
meta (JSON object of the fields the mapping did not use).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import UserError
from core.files import atomic_target
from core.progress import ProgressFn, no_progress
from core.sources import Source

PROMPT_NAMES = ("question", "problem", "prompt", "instruction", "input", "query")
RESPONSE_NAMES = ("response", "output", "completion", "solution", "answer", "rationale")
MESSAGES_NAMES = ("messages", "conversations", "conversation")
ID_NAMES = ("id", "uid", "uuid", "_id")
# words in a field name that mark text belonging to the prompt: before the question...
CONTEXT_WORDS = ("body", "context", "passage", "story", "background", "premise", "scenario")
CONTEXT_WORDS += ("article", "document", "statement", "input", "text")
# ...or after it
CHOICE_WORDS = ("options", "choices")
CONTEXT_MIN_CHARS = 20
SKIPS_LISTED = 20

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("messages", pa.string()),
        ("source", pa.string()),
        ("origin_file", pa.string()),
        ("origin_row", pa.int64()),
        ("meta", pa.string()),
    ]
)
_BATCH_ROWS = 8192
_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


# --- rendering values to text --------------------------------------------------------------


def render_value(value: Any) -> str:
    """Text of a field value, the same way everywhere.

    str as is; None and NaN -> ""; bool -> "true"/"false"; int -> digits; a float with an
    integral value -> digits ("34.0" -> "34"), else its shortest repr; a list -> its items
    rendered, one per line; a dict -> compact JSON; anything else -> str().
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "\n".join(render_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return render_value(value.tolist())
    return str(value)


class FieldMissing(Exception):
    """A mapped field is absent from a row."""


def _lookup(row: dict[str, Any], path: str) -> Any:
    """A field by name, else by dotted path into nested objects."""
    if path in row:
        return row[path]
    node: Any = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise FieldMissing(path)
    return node


def _template_parts(spec: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(spec.replace("\\n", "\n")))
    except ValueError as e:
        raise UserError(f"template {spec!r}: {e}; write a literal brace as {{{{ or }}}}") from e


def is_template(spec: str) -> bool:
    """A spec with a brace is a template (`{field}` inserts a field); else a field name or path."""
    return "{" in spec or "}" in spec


def compile_field(spec: str) -> Callable[[dict[str, Any]], str]:
    """A function row -> text for a field name, dotted path or template."""
    if not is_template(spec):
        return lambda row: render_value(_lookup(row, spec))
    parts = _template_parts(spec)
    for _, name, fmt, conv in parts:
        if name == "":
            raise UserError(f"template {spec!r}: empty {{}}; name a field inside the braces")
        if fmt or conv:
            raise UserError(f"template {spec!r}: use plain {{field}}, without ! or : options")

    def render(row: dict[str, Any]) -> str:
        out = []
        for literal, name, _, _ in parts:
            out.append(literal)
            if name is not None:
                out.append(render_value(_lookup(row, name)))
        return "".join(out).strip()

    return render


def template_fields(spec: str) -> list[str]:
    """The fields a spec reads (their top-level names)."""
    if not is_template(spec):
        return [spec.split(".")[0] if "." in spec else spec]
    names = [n for _, n, _, _ in _template_parts(spec) if n]
    return [n.split(".")[0] for n in names]


# --- the mapping ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """Where prompt, response (or messages) and the optional id come from."""

    prompt: str | None = None
    response: str | None = None
    messages: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if self.messages and (self.prompt or self.response):
            raise UserError("give either a messages field or prompt and response, not both")
        if not self.messages and bool(self.prompt) != bool(self.response):
            missing = "response" if self.prompt else "prompt"
            raise UserError(f"map both a prompt and a response field (the {missing} is missing)")

    @property
    def complete(self) -> bool:
        return bool(self.messages or (self.prompt and self.response))

    def describe(self) -> str:
        """One line, e.g. `prompt <- {Body} {Question}, response <- Answer, id <- ID`."""
        parts = [f"messages <- {self.messages}"] if self.messages else []
        if self.prompt:
            parts += [f"prompt <- {self.prompt}", f"response <- {self.response}"]
        if self.id:
            parts.append(f"id <- {self.id}")
        return ", ".join(parts).replace("\n", "\\n")

    def used_fields(self) -> set[str]:
        specs = [s for s in (self.prompt, self.response, self.messages, self.id) if s]
        return {f for s in specs for f in template_fields(s)}


def detect_mapping(fields: Iterable[str], given: Mapping | None = None) -> Mapping:
    """Fill what `given` leaves open from common field names (case-insensitive).

    Raises UserError naming the fields present when no prompt/response can be found.
    """
    given = given or Mapping()
    names = list(fields)
    lower = {n.lower(): n for n in reversed(names)}

    def first(candidates: tuple[str, ...]) -> str | None:
        return next((lower[c] for c in candidates if c in lower), None)

    id_field = given.id or first(ID_NAMES)
    if given.complete:
        return replace(given, id=id_field)
    messages = first(MESSAGES_NAMES)
    if messages:
        return Mapping(messages=messages, id=id_field)
    prompt, response = first(PROMPT_NAMES), first(RESPONSE_NAMES)
    if prompt and prompt.lower() == "instruction" and "input" in lower:
        prompt = f"{{{prompt}}}\\n\\n{{{lower['input']}}}"  # Alpaca: instruction + input
    if not prompt or not response:
        role = "prompt" if not prompt else "response"
        raise UserError(
            f"no {role} field found among: {', '.join(names) or '(none)'}; "
            "map the prompt and the response (each a field or a template), or a messages field"
        )
    return Mapping(prompt=prompt, response=response, id=id_field)


def prompt_hint(row: dict[str, Any], mapping: Mapping) -> tuple[str, str] | None:
    """(a note, a prompt template) when fields the mapping leaves out look like part of the
    prompt, judging by the first row: a field named like context (body, context, passage,
    ..., see CONTEXT_WORDS) with at least CONTEXT_MIN_CHARS of text, or like answer choices
    (options, choices), that the prompt does not already contain. None when there is none.
    The note names no command-line flag, so it reads the same in the CLI and the app."""
    if not mapping.prompt or is_template(mapping.prompt) or mapping.prompt not in row:
        return None
    prompt = render_value(row[mapping.prompt])
    before, after = [], []
    for name, value in row.items():
        words = set(re.split(r"[^a-z0-9]+", name.lower()))
        text = render_value(value).strip()
        if name in mapping.used_fields() or not text or text in prompt or is_template(name):
            continue
        if words & set(CHOICE_WORDS):
            after.append(name)
        elif words & set(CONTEXT_WORDS) and len(text) >= CONTEXT_MIN_CHARS:
            before.append(name)
    if not before and not after:
        return None
    template = " ".join(f"{{{n}}}" for n in [*before, mapping.prompt])
    template += "".join(f"\\n{{{n}}}" for n in after)
    names = [*before, *after]
    one = len(names) == 1
    fields = ("field " if one else "fields ") + ", ".join(f"'{n}'" for n in names)
    note = (
        f"{fields} {'looks' if one else 'look'} like part of the prompt but "
        f"{'is' if one else 'are'} not in it (the prompt is only '{mapping.prompt}'); "
        f"to include {'it' if one else 'them'}, use a prompt template like {template}"
    )
    return note, template


# --- records -------------------------------------------------------------------------------


@dataclass
class Record:
    """One normalised sample."""

    id: str
    prompt: str
    response: str
    messages: list[dict[str, str]] | None = None
    source: str = "seed"
    origin_file: str = ""
    origin_row: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "response": self.response,
            "messages": None
            if self.messages is None
            else json.dumps(self.messages, ensure_ascii=False),
            "source": self.source,
            "origin_file": self.origin_file,
            "origin_row": self.origin_row,
            "meta": json.dumps(self.meta, ensure_ascii=False, default=render_value),
        }


class RowProblem(Exception):
    """A row cannot become a record; the message is the reason."""


def _parse_messages(value: Any, spec: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RowProblem(f"field '{spec}' is text but not a JSON list of messages") from e
    if not isinstance(value, list) or not value:
        raise RowProblem(f"field '{spec}' is not a list of messages")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise RowProblem(f"field '{spec}': message {i} is not an object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role not in _ROLES or not isinstance(content, str):
            raise RowProblem(
                f"field '{spec}': message {i} needs a role (user/assistant/system) and text content"
            )
        messages.append({"role": _ROLES[role], "content": content})
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise RowProblem(f"field '{spec}': no assistant message")
    users = [m for m in messages[:last] if m["role"] == "user"]
    if not users:
        raise RowProblem(f"field '{spec}': no user message before the last assistant message")
    return messages[: last + 1]


def make_record(
    row: dict[str, Any],
    number: int,
    mapping: Mapping,
    origin_file: str,
    compiled: dict[str, Callable],
) -> Record:
    """Apply the mapping to one row; raise RowProblem with the reason it cannot."""
    try:
        if mapping.messages:
            messages = _parse_messages(_lookup(row, mapping.messages), mapping.messages)
            prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            response = messages[-1]["content"]
        else:
            messages = None
            prompt = compiled["prompt"](row)
            response = compiled["response"](row)
        rid = render_value(_lookup(row, mapping.id)) if mapping.id else str(number)
    except FieldMissing as e:
        raise RowProblem(
            f"field '{e.args[0]}' not found (fields: {', '.join(row) or 'none'})"
        ) from e
    if not prompt.strip():
        raise RowProblem(f"empty prompt ({mapping.prompt or mapping.messages})")
    if not response.strip():
        raise RowProblem(f"empty response ({mapping.response or mapping.messages})")
    if mapping.id and not rid.strip():
        raise RowProblem(f"empty id (field '{mapping.id}')")
    used = mapping.used_fields()
    meta = {k: v for k, v in row.items() if k not in used}
    return Record(rid, prompt, response, messages, "seed", origin_file, number, meta)


# --- the validation report -----------------------------------------------------------------


@dataclass
class Report:
    """What a pass over a source found. Lengths are in characters."""

    source: str
    format: str
    mapping: dict[str, str | None]
    detected: list[str]
    notes: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    rows_read: int = 0
    kept: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    skips: list[dict[str, str]] = field(default_factory=list)
    duplicates: int = 0
    duplicate_examples: list[dict[str, str]] = field(default_factory=list)
    prompt_chars: dict[str, float] = field(default_factory=dict)
    response_chars: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""
    prompt_hint: str | None = None  # the note on fields that look like part of the prompt
    prompt_template: str | None = None  # the prompt template it suggests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A human-readable summary, one line per fact."""
        mapping = Mapping(**self.mapping).describe()
        out = [
            f"{self.source} ({self.format}): {self.rows_read} rows read, {self.kept} kept, "
            f"{self.skipped} skipped",
            f"mapping: {mapping}"
            + (f" (detected: {', '.join(self.detected)})" if self.detected else ""),
        ]
        out += [f"note: {n}" for n in self.notes]
        if self.prompt_template:
            out.append(f'  (on the command line: --prompt "{self.prompt_template}")')
        for label, stats in (("prompt", self.prompt_chars), ("response", self.response_chars)):
            if stats:
                out.append(
                    f"{label} length (chars): min {stats['min']:.0f}, median {stats['median']:.0f}, "
                    f"mean {stats['mean']:.0f}, p95 {stats['p95']:.0f}, max {stats['max']:.0f}"
                )
        out.append(f"exact duplicates (same prompt and response): {self.duplicates}")
        out += [f"  {d['where']} repeats {d['first']}" for d in self.duplicate_examples]
        if self.skipped:
            out.append(
                "skipped rows by reason: "
                + "; ".join(f"{k}: {v}" for k, v in self.skip_reasons.items())
            )
            out += [f"  {s['where']}: {s['reason']}" for s in self.skips]
            if self.skipped > len(self.skips):
                out.append(f"  ... and {self.skipped - len(self.skips)} more")
        return out

    def skip(self, where: str, reason: str) -> None:
        self.skipped += 1
        kind = reason.split(" (")[0]
        self.skip_reasons[kind] = self.skip_reasons.get(kind, 0) + 1
        if len(self.skips) < SKIPS_LISTED:
            self.skips.append({"where": where, "reason": reason})


def _length_stats(lengths: array) -> dict[str, float]:
    if not lengths:
        return {}
    a = np.frombuffer(lengths, dtype=np.uint32)
    return {
        "min": float(a.min()),
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def _hash64(*texts: str | None) -> int:
    h = hashlib.blake2b(digest_size=8)
    for t in texts:
        h.update(b"\x00" if t is None else t.encode("utf-8", "surrogatepass") + b"\x01")
    return int.from_bytes(h.digest(), "little")


def _first_repeat(hashes: array) -> tuple[np.ndarray, np.ndarray]:
    """Positions (later, earlier) of entries whose hash appeared before, in order."""
    h = np.frombuffer(hashes, dtype=np.uint64)
    if h.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    same = sorted_h[1:] == sorted_h[:-1]
    if not same.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    later = order[1:][same]
    # the first occurrence of each repeated value: walk back over its run
    starts = np.flatnonzero(np.r_[True, sorted_h[1:] != sorted_h[:-1]])
    run_start = starts[np.searchsorted(starts, np.arange(1, h.size), side="right") - 1]
    earlier = order[run_start[same]]
    keep = np.argsort(later, kind="stable")
    return later[keep], earlier[keep]


# --- staging: source -> Parquet of records + report -----------------------------------------


def preview(
    source: Source, mapping: Mapping | None, *, rows: int = 5
) -> tuple[list[Record], Report]:
    """The first `rows` rows as records, with the report of just those rows."""
    records: list[Record] = []
    stager = _Stager(source, mapping, limit=rows)
    stager.run(records.append)
    return records, stager.finish(None)


def stage(
    source: Source,
    mapping: Mapping | None,
    out: Path,
    *,
    limit: int | None = None,
    on_progress: ProgressFn = no_progress,
) -> Report:
    """Stream `source` through `mapping` into Parquet file `out`; return the report.

    Raises UserError when nothing usable comes out: no usable fields, zero rows, all rows
    bad, or duplicate ids; or when reading the source or writing `out` fails (a full disk).
    The caller owns `out` and removes it on failure.
    """
    stager = _Stager(source, mapping, limit)
    batch: list[dict[str, Any]] = []
    try:
        with pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:

            def add(record: Record) -> None:
                batch.append(record.to_row())
                if len(batch) >= _BATCH_ROWS:
                    writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
                    batch.clear()

            stager.run(add, on_progress=on_progress)
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
        return stager.finish(out)
    except OSError as e:
        raise UserError(
            f"{source.name}: reading it, or writing its records in {out.parent}, failed "
            f"({e.strerror or e}); nothing was kept"
        ) from e


class _Stager:
    """One streaming pass, rows -> records (`run`), then the checks over all of them (`finish`)."""

    def __init__(self, source: Source, mapping: Mapping | None, limit: int | None):
        self.source, self.limit = source, limit
        self.given = mapping or Mapping()
        self.mapping = self.given
        self.compiled: dict[str, Callable[[dict[str, Any]], str]] = {}
        self.report = Report(source.name, source.format, asdict(self.given), [], list(source.notes))
        self.id_hashes, self.content_hashes, self.origins = array("Q"), array("Q"), array("q")
        self.prompt_len, self.response_len = array("I"), array("I")
        self.fingerprint = hashlib.blake2b(digest_size=16)

    def run(self, emit: Callable[[Record], None], *, on_progress: ProgressFn = no_progress) -> None:
        """Read rows, emit the records; raise UserError when none is usable."""
        src, report = self.source, self.report
        settled, first_problem = False, None
        for raw in src.rows():
            report.rows_read += 1
            if raw.value is not None and not settled:
                self._settle(raw.value, src.where(raw.number))
                settled = True
            try:
                if raw.error:
                    raise RowProblem(raw.error)
                record = make_record(raw.value, raw.number, self.mapping, src.name, self.compiled)
            except RowProblem as e:
                report.skip(src.where(raw.number), str(e))
                first_problem = first_problem or f"{src.where(raw.number)}: {e}"
            else:
                self._count(record, raw.number)
                emit(record)
            if report.rows_read % 1000 == 0:
                on_progress(src.done(), src.total)
            if self.limit and report.rows_read >= self.limit:
                break
        on_progress(src.total or src.done(), src.total)
        if report.rows_read == 0:
            raise UserError(f"{src.name}: no rows")
        if report.kept == 0:
            raise UserError(
                f"{src.name}: all {report.rows_read} rows were skipped; first: {first_problem}"
            )

    def _count(self, record: Record, number: int) -> None:
        self.report.kept += 1
        self.id_hashes.append(_hash64(record.id))
        self.content_hashes.append(_hash64(record.prompt, record.response, _messages_key(record)))
        self.origins.append(number)
        self.prompt_len.append(len(record.prompt))
        self.response_len.append(len(record.response))
        self.fingerprint.update(_fingerprint_line(record))

    def finish(self, out: Path | None) -> Report:
        """Ids, duplicates, lengths and fingerprint over all kept records; `out` is their file."""
        src, report = self.source, self.report
        self._check_ids(out)
        later, earlier = _first_repeat(self.content_hashes)
        report.duplicates = int(later.size)
        pairs = zip(later[:SKIPS_LISTED].tolist(), earlier[:SKIPS_LISTED].tolist(), strict=True)
        report.duplicate_examples = [
            {"where": src.where(self.origins[i]), "first": src.where(self.origins[j])}
            for i, j in pairs
        ]
        report.prompt_chars = _length_stats(self.prompt_len)
        report.response_chars = _length_stats(self.response_len)
        report.fingerprint = self.fingerprint.hexdigest()
        return report

    def _settle(self, fields: dict[str, Any], where: str) -> None:
        """Complete the mapping from the first readable row's fields; compile its templates."""
        try:
            self.mapping = detect_mapping(fields, self.given)
        except UserError as e:
            raise UserError(f"{self.source.name}: {where}: {e}") from e
        if not self.mapping.messages:
            self.compiled = {
                "prompt": compile_field(self.mapping.prompt),
                "response": compile_field(self.mapping.response),
            }
        self.report.mapping = asdict(self.mapping)
        self.report.fields = list(fields)
        given = asdict(self.given)
        self.report.detected = [k for k, v in asdict(self.mapping).items() if v and not given[k]]
        if "prompt" in self.report.detected and (hint := prompt_hint(fields, self.mapping)):
            self.report.prompt_hint, self.report.prompt_template = hint
            self.report.notes.append(hint[0])

    def _check_ids(self, out: Path | None) -> None:
        """Fail on a repeated mapped id; a repeated detected id falls back to row numbers."""
        later, earlier, origins = *_first_repeat(self.id_hashes), self.origins
        if not later.size:
            return
        src, field_name = self.source, self.mapping.id
        i, j = int(later[0]), int(earlier[0])
        value = ""
        if out is not None:
            ids = pq.read_table(out, columns=["id"]).column("id")
            if ids[i].as_py() != ids[j].as_py():
                return  # a 64-bit hash collision, not a repeat
            value = f" {ids[i].as_py()!r}"
        if not self.given.id and out is not None:
            _number_rows(out)
            self.mapping = replace(self.mapping, id=None)
            self.report.mapping = asdict(self.mapping)
            self.report.detected.remove("id")
            self.report.notes.append(
                f"field '{field_name}' repeats values, so rows are numbered as ids instead"
            )
            return
        raise UserError(
            f"{src.name}: {src.where(origins[i])}: duplicate id{value} (field '{field_name}'), "
            f"first at {src.where(origins[j])}; {later.size} rows repeat an id"
        )


def _number_rows(path: Path) -> None:
    """Rewrite a records file with each record's origin row number as its id."""
    pf = pq.ParquetFile(path)
    with atomic_target(path) as tmp, pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i)
            ids = pc.cast(t.column("origin_row"), pa.string())
            writer.write_table(t.set_column(0, "id", ids))


def _messages_key(record: Record) -> str | None:
    return None if record.messages is None else json.dumps(record.messages, ensure_ascii=False)


def _fingerprint_line(record: Record) -> bytes:
    row = [record.id, record.prompt, record.response, _messages_key(record)]
    return json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


# --- reading records back -------------------------------------------------------------------


def read_columns(
    path: Path, columns: list[str], rows: Sequence[int] | None = None
) -> dict[str, list[Any]]:
    """Columns of a records Parquet file as plain lists, in row order, or of the rows at
    these indices only, in that order (meta and messages as their JSON text)."""
    table = pq.read_table(path, columns=columns)
    return (table if rows is None else table.take(rows)).to_pydict()


def iter_records(path: Path, *, batch_rows: int = 1024) -> Iterator[Record]:
    """Records one at a time, in row order, with flat memory."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows):
        for r in batch.to_pylist():
            yield Record(
                r["id"],
                r["prompt"],
                r["response"],
                None if r["messages"] is None else json.loads(r["messages"]),
                r["source"],
                r["origin_file"],
                r["origin_row"],
                json.loads(r["meta"]) if r["meta"] else {},
            )
