"""The command line: `python -m core VERB ...`.

Contract (every verb): `--workspace DIR` (else env PRISM_WORKSPACE, else ./cache) and
`--json` (one JSON object on stdout). Exit 0 on success; exit 2 for bad input or usage,
with one line on stderr beginning `error:`; exit 1 only for an internal fault. Long work
shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from core.errors import Cancelled, UserError
from core.progress import ProgressFn
from core.settings import (
    Bound,
    bound_of,
    choices_of,
    default_of,
    flag_of,
    flat_name,
    help_of,
    kind_of,
)

Result = tuple[dict[str, Any], list[str]]  # (the --json object, the human-readable lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage and exits 2; make it one line
        raise UserError(f"{self.prog}: {message} (see --help)")


@contextmanager
def progress_bar(desc: str, unit: str = "", unit_scale: bool = True) -> Iterator[ProgressFn]:
    """A tqdm bar on a terminal's stderr (rate and ETA), shown when work lasts over a second."""
    from tqdm import tqdm

    bar = tqdm(
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        delay=1.0,
        mininterval=0.5,
        leave=False,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        # a terminal that reports a 0 x 0 size would hide the bar: fall back to 80 x 24
        ncols=shutil.get_terminal_size().columns,
        nrows=shutil.get_terminal_size().lines,
    )
    try:

        def update(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield update
    finally:
        bar.close()


def _within(kind: type, bound: Bound, flag: str) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` that `bound` allows; out of it, a UserError
    that names the flag ("--dim must be at least 8 and at most 65536, not 0")."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise UserError(f"{flag} {text!r} is not {noun}") from None
        if problem := bound.problem(value):
            raise UserError(f"{flag} {problem}")
        return value

    return parse


def _cluster_k(flag: str) -> Callable[[str], float]:
    """An argparse type for --k: a count of clusters or a fraction of the rows."""

    def parse(text: str) -> float:
        from core.regions import k_problem

        try:
            k = float(text)
        except ValueError:
            raise UserError(f"{flag} {text!r} is not a number") from None
        if problem := k_problem(k):
            raise UserError(f"{flag} {problem}")
        return k

    return parse


def add_settings(group: Any, settings: type, *names: str, **overrides: dict[str, Any]) -> None:
    """Add a flag to an argparse group for each named field of a settings dataclass (all
    its fields when none is named), all from the field (core/settings.py): the flag's
    name, its type and range, choices, default and help. The argument is the field's flat
    name (`args.proxy` for ProxySpec.name). `overrides[name]` replaces add_argument's
    arguments for one field (a --clusters that takes "3,7" or auto)."""
    for name in names or [f.name for f in fields(settings)]:
        flag, kind = flag_of(settings, name), kind_of(settings, name)
        default = default_of(settings, name)
        if kind is bool:
            options: dict[str, Any] = {"action": "store_true"}
        else:
            options = {"default": None if default is MISSING else default}
            if kind in (int, float):
                options["type"] = _within(kind, bound_of(settings, name), flag)
            if choices := choices_of(settings, name):
                options["choices"] = choices
        options.update(overrides.get(name, {}))
        said = options.get("default")
        tail = " (default: %(default)s)" if said is not False and said not in (None, "") else ""
        group.add_argument(flag, help=help_of(settings, name) + tail, **options)


def _workspace(args: argparse.Namespace):
    from core.workspace import Workspace

    return Workspace(args.workspace)


def _mapping(args: argparse.Namespace):
    from core.records import Mapping

    if not (args.prompt or args.response or args.messages or args.id):
        return None
    return Mapping(prompt=args.prompt, response=args.response, messages=args.messages, id=args.id)


# --- verbs ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> Result:
    import tempfile

    from core.records import stage
    from core.sources import open_source

    mapping = _mapping(args)
    source = open_source(
        args.path, split=args.split, subset=args.subset, encoding=args.encoding, limit=args.limit
    )
    with tempfile.TemporaryDirectory() as tmp, progress_bar("validating") as bar:
        out = Path(tmp) / "records.parquet"
        report = stage(source, mapping, out, limit=args.limit, on_progress=bar)
    return report.to_dict(), report.lines()


def cmd_import(args: argparse.Namespace) -> Result:
    mapping = _mapping(args)
    ws = _workspace(args)
    name = args.name or _name_from(args.path)
    with progress_bar(f"importing {name}") as bar:
        info, report = ws.import_dataset(
            args.path,
            name=name,
            mapping=mapping,
            split=args.split,
            subset=args.subset,
            encoding=args.encoding,
            limit=args.limit,
            replace=args.replace,
            on_progress=bar,
        )
    data = {
        "dataset": info.name,
        "rows": info.rows,
        "skipped": report.skipped,
        "report": report.to_dict(),
    }
    return data, [
        *report.lines(),
        f"imported {info.rows} rows as dataset {info.name!r} in {ws.root}",
    ]


def _name_from(path: str) -> str:
    from core.workspace import suggest_name

    # a relative file path: its folder's name counts too ("test.jsonl" in gsm8k/)
    return suggest_name(os.path.abspath(path) if os.path.exists(path) else path)


def cmd_datasets(args: argparse.Namespace) -> Result:
    ws = _workspace(args)
    items = ws.datasets()
    data = {
        "workspace": str(ws.root),
        "datasets": [
            {"name": d.name, "rows": d.rows, "source": d.source, "created_at": d.created_at}
            for d in items
        ],
    }
    width = max((len(d.name) for d in items), default=4)
    lines = [f"{'name':<{width}}  {'rows':>9}  source"]
    lines += [f"{d.name:<{width}}  {d.rows:>9}  {d.source}" for d in items]
    return data, lines if items else [f"no datasets in {ws.root}"]


def cmd_rename(args: argparse.Namespace) -> Result:
    _workspace(args).rename_dataset(args.old, args.new)
    return {"renamed": args.old, "to": args.new}, [f"renamed {args.old!r} to {args.new!r}"]


def cmd_delete(args: argparse.Namespace) -> Result:
    _workspace(args).delete_dataset(args.name)
    return {"deleted": args.name}, [f"deleted {args.name!r}"]


def feature_request(args: argparse.Namespace):
    """The FeatureRequest (proxy, config, runtime) of the feature flags several verbs share."""
    from core.config import FeatureRequest

    return FeatureRequest.from_flags(args)


def features_for(args: argparse.Namespace, ws, name: str, space: str = "gradient"):
    """The dataset's features for the verb's options (or, for the map's `space` "sentence",
    its sentence embeddings: maps.space_request): cached, or computed with a progress bar;
    on a terminal, how long the computation will take is said first (stderr)."""
    from core.features import compute_features
    from core.maps import space_noun, space_request

    proxy, config, runtime = feature_request(args)
    proxy, config = space_request(space, proxy, config)
    what = space_noun(space)
    with progress_bar(f"{what} of {name}", unit="sample", unit_scale=False) as bar:
        return compute_features(
            ws,
            name,
            proxy=proxy,
            config=config,
            runtime=runtime,
            on_progress=bar,
            on_estimate=_say_estimate if sys.stderr.isatty() else None,
        )


def _say_estimate(estimate) -> None:
    """Print a feature computation's estimate on stderr, before it starts."""
    first, *rest = estimate.lines()
    print("\n".join([f"estimate: {first}", *(f"  {line}" for line in rest)]), file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> Result:
    from core.features import write_features_file
    from core.files import TargetExists, check_target
    from core.vectorfiles import sidecar

    if args.estimate:
        if args.out:
            raise UserError("--estimate computes nothing, so it writes nothing: leave out --out")
        return _estimate(args)
    out = Path(args.out) if args.out else None
    if out:
        try:
            for target in [out] if out.suffix == ".safetensors" else [out, sidecar(out)]:
                check_target(target, overwrite=args.overwrite)
        except TargetExists as e:
            raise UserError(f"{e}; pass --overwrite to replace it") from None
    ws = _workspace(args)
    fs = features_for(args, ws, args.name)
    data = {
        "dataset": args.name,
        "rows": fs.rows,
        "dim": fs.dim,
        "method": fs.config.method,
        "proxy": fs.proxy,
        "cached": fs.cached,
        "key": fs.key,
        "truncated": fs.facts.get("truncated", 0),
        "seconds": fs.facts.get("seconds"),
        "samples_per_second": fs.facts.get("samples_per_second"),
        "warnings": [fs.facts["warning"]] if fs.facts.get("warning") else [],
    }
    lines = [
        f"{fs.rows} x {fs.dim} {fs.config.method} features of {args.name!r} with proxy {fs.proxy}"
        + (" (from the cache)" if fs.cached else f" in {fs.facts.get('seconds')} s"),
    ]
    if data["truncated"]:
        lines.append(
            f"{data['truncated']} samples were cut to --max-length {fs.config.max_length} tokens"
        )
    if out:
        try:
            written = write_features_file(ws.dataset(args.name), fs, out)
        except OSError as e:
            raise UserError(f"{out}: cannot write the features ({e.strerror})") from e
        data["out"] = str(out)
        data["files"] = [str(p) for p in written]
        lines.append(
            f"wrote {' and '.join(str(p) for p in written)} ({fs.rows} x {fs.dim} float32, "
            "dataset row order, with the settings that make `features-import` give this "
            "feature set in another workspace holding the same dataset)"
        )
    return data, lines


def _estimate(args: argparse.Namespace) -> Result:
    """embed --estimate: how long computing the features would take here; nothing stored."""
    from core.estimate import estimate_features
    from core.features import find_features

    ws = _workspace(args)
    proxy, config, runtime = feature_request(args)
    with progress_bar(f"estimating the features of {args.name}") as bar:
        estimate = estimate_features(
            ws, args.name, proxy=proxy, config=config, runtime=runtime, on_progress=bar
        )
    cached = find_features(ws, args.name, proxy=proxy, config=config) is not None
    lines = [f"estimate: {estimate.lines()[0]}", *estimate.lines()[1:]]
    if cached:
        lines.append("these features are in the cache already: embed answers at once")
    return {**estimate.to_dict(), "cached": cached}, lines


def cmd_features_import(args: argparse.Namespace) -> Result:
    from core.config import FILE
    from core.features import import_features

    ws = _workspace(args)
    with progress_bar(f"importing vectors into {args.name}", unit="B") as bar:
        fs = import_features(
            ws, args.name, args.file, id_column=args.id_column, column=args.column, on_progress=bar
        )
    imported = fs.config.method == FILE
    data = {
        "dataset": args.name,
        "rows": fs.rows,
        "dim": fs.dim,
        "key": fs.key,
        "method": fs.config.method,
        "proxy": fs.proxy,
        "revision": fs.encoder.proxy.revision,
        "cached": fs.cached,
        "vectors_of_their_own": imported,
        "notes": fs.facts.get("notes", []),
        "warnings": fs.facts.get("notes", []),
    }
    said = "already attached: " if fs.cached else ""
    if imported:
        line = (
            f"{said}{args.file} attached to dataset {args.name!r} as vectors {fs.proxy} "
            f"({fs.rows:,} x {fs.dim}); use them with --method file --proxy {fs.proxy} (score, "
            "map, duplicates, curate, export) or pick them in the app's sidebar; synthesis "
            "needs the proxy that made them"
        )
    else:
        line = (
            f"{said}{args.file} attached to dataset {args.name!r} as its {fs.config.method} "
            f"features of proxy {fs.proxy} ({fs.rows:,} x {fs.dim}): the feature set that "
            "computing them here gives, so every verb (synthesis too) uses it with those settings"
        )
    return data, [line]


def cmd_features(args: argparse.Namespace) -> Result:
    from core.features import feature_sets

    sets = feature_sets(_workspace(args), args.name)
    data = {
        "dataset": args.name,
        "feature_sets": [
            {
                "key": s["key"],
                "proxy": s["proxy"],
                "settings": s["settings"],
                "rows": s["rows"],
                "dim": s["dim"],
                "complete": bool(s["complete"]),
                "imported_from": s["facts"].get("imported_from"),
                "updated_at": s["updated_at"],
            }
            for s in sets
        ],
    }
    lines = [
        f"{s['proxy']}  "
        + " ".join(f"{k}={v}" for k, v in s["settings"].items())
        + f"  {s['rows']:,} x {s['dim']}"
        + ("" if s["complete"] else "  (incomplete)")
        + (f"  from {s['imported_from']}" if s["imported_from"] else "")
        for s in data["feature_sets"]
    ]
    return data, lines or [f"no feature sets for dataset {args.name!r} yet"]


def _q(text: str) -> float:
    """An argparse type for --q: a Vendi order, a number of at least 0 or inf."""
    try:
        q = float(text)
    except ValueError:
        raise UserError(f"--q {text!r}: give a number (0.5, 1, 2) or inf") from None
    if not q >= 0:  # also refuses nan
        raise UserError(f"--q must be at least 0 (or inf), not {text}")
    return q


def cmd_score(args: argparse.Namespace) -> Result:
    from core import diversity
    from core.features import find_features

    ws = _workspace(args)
    proxy, config, runtime = feature_request(args)
    if args.by not in (None, "cluster", "source") and not find_features(
        ws, args.name, proxy=proxy, config=config
    ):
        diversity.group_labels(ws, args.name, args.by)  # a bad field fails before hours of work
    features_for(args, ws, args.name)  # computed first when missing, its estimate said
    with progress_bar(f"scoring {args.name}") as bar:
        data = diversity.score(
            ws,
            args.name,
            proxy=proxy,
            config=config,
            runtime=runtime,
            q=args.q,
            by=args.by,
            k=args.k,
            replicates=args.bootstrap,
            on_progress=bar,
        )
    lines = [
        f"{args.name}: G-Vendi {data['g_vendi']:.2f} over {data['rows']:,} rows "
        f"({data['method']} features of {data['proxy']})"
    ]
    lines.append(
        "Vendi by order q: " + ", ".join(f"q={q}: {v:.2f}" for q, v in data["orders"].items())
    )
    if "interval" in data:
        i = data["interval"]
        lines.append(
            f"{i['level']:.0%} bootstrap interval ({i['replicates']} replicates"
            + (f" of {i['blocks']} blocks of rows" if i.get("blocks") else "")
            + f"): {i['low']:.2f} - {i['high']:.2f}"
        )
    for g in data.get("groups", []):
        lines.append(f"  {args.by} {g['group']}: {g['rows']} rows, G-Vendi {g['g_vendi']:.2f}")
    if args.redundant:
        fs = features_for(args, ws, args.name)
        data["redundant"] = diversity.redundant(ws, args.name, fs, limit=args.redundant)
        lines.append(f"most redundant {args.redundant} (G-Vendi drop without each):")
        lines += [
            f"  row {r['row']} ({r['id']}): {r['marginal_value']:+.5f}  {r['prompt'][:70]!r}"
            for r in data["redundant"]
        ]
    if args.baselines:
        with progress_bar("baselines") as bar:
            data["baselines"] = diversity.baselines(ws, args.name, runtime=runtime, on_progress=bar)
        b = data["baselines"]
        sentence = (
            f"{b['sentence_vendi']:.2f}"
            if b["sentence_vendi"] is not None
            else f"unavailable ({b['sentence_error']})"
        )
        lines.append(f"sentence-embedding Vendi: {sentence}")
        lines.append(
            "distinct-n: " + ", ".join(f"{n}: {v:.3f}" for n, v in b["distinct_n"].items())
        )
        lines.append(
            f"mean response: {b['mean_response']['chars']:.0f} chars, {b['mean_response']['words']:.0f} words"
        )
    return data, lines


def cmd_compare(args: argparse.Namespace) -> Result:
    from core import diversity

    ws = _workspace(args)
    proxy, config, runtime = feature_request(args)
    if len(set(args.names)) == len(args.names) and all(map(ws.has_dataset, args.names)):
        for name in args.names:  # computed first when missing, each estimate said
            features_for(args, ws, name)
    with progress_bar("comparing") as bar:
        data = diversity.compare(
            ws,
            args.names,
            proxy=proxy,
            config=config,
            runtime=runtime,
            equal=args.equal_size,
            repeats=args.repeats,
            q=args.q,
            on_progress=bar,
        )
    width = max(len(n) for n in args.names)
    lines = []
    if data["equal_size"]:
        lines.append(
            f"G-Vendi on random subsamples of {data['equal_size']:,} rows ({args.repeats} draws each):"
        )
    for d in data["datasets"]:
        extra = (
            f" +- {d['std']:.2f} (all {d['rows']:,} rows: {d['g_vendi_full']:.2f})"
            if "std" in d
            else f"  ({d['rows']:,} rows)"
        )
        lines.append(f"  {d['name']:<{width}}  {d['g_vendi']:8.2f}{extra}")
    if data["sizes_differ"] and not data["equal_size"]:
        lines.append(
            "note: the datasets differ in size and G-Vendi grows with N; add --equal-size to compare fairly"
        )
    return data, lines


def cmd_map(args: argparse.Namespace) -> Result:
    from core import maps

    ws = _workspace(args)
    fs = features_for(args, ws, args.name, args.space)
    clustering = maps.clusters_for(fs, k=args.k, seed=args.seed)
    clusters = maps.describe(ws, args.name, fs, clustering, sparse_below=args.sparse_below)
    data = {
        "dataset": args.name,
        "space": args.space,
        "rows": fs.rows,
        "k": clustering.k,
        "sparse_below": args.sparse_below,
        "clusters": [
            {k: c[k] for k in ("id", "size", "sparse", "g_vendi", "keywords", "examples")}
            for c in clusters
        ],
        "warnings": [fs.facts["warning"]] if fs.facts.get("warning") else [],
    }
    n_sparse = sum(c["sparse"] for c in clusters)
    lines = [
        f"{args.name}: {clustering.k} clusters of {fs.rows:,} rows in {args.space} space; "
        f"{n_sparse} sparse (smaller than the {args.sparse_below:g}th percentile of sizes)"
    ]
    for c in sorted(clusters, key=lambda c: c["size"]):
        flag = "sparse" if c["sparse"] else "      "
        lines.append(
            f"  {c['id']:>4} {c['size']:>6} {flag} G-Vendi {c['g_vendi']:6.2f}  {', '.join(c['keywords'])}"
        )
    if args.layout:
        with progress_bar("layout", unit="step", unit_scale=False) as bar:
            layout = maps.layout_for(fs, on_progress=bar)
        data["layout"] = {"rows": len(layout.coords), "cached": layout.cached}
        lines.append("2-D layout " + ("from the cache" if layout.cached else "computed and cached"))
    if args.disagreement:
        found, said = _disagreement(args, ws, fs, clustering, clusters)
        data["disagreement"] = found
        lines += said
    return data, lines


DISAGREEMENT_LINES = 10  # clusters the text output lists (--json: all of them)


def _disagreement(args: argparse.Namespace, ws, fs, clustering, clusters) -> Result:
    """map --disagreement: the clusters of both spaces ranked by how much the other space
    disagrees (core/disagreement.py), the other space's features and clusters computed
    with the same k and seed when missing."""
    from core import maps
    from core.config import SPACES
    from core.disagreement import Space, disagreement

    other = next(s for s in SPACES if s != args.space)
    other_fs = features_for(args, ws, args.name, other)
    other_clustering = maps.clusters_for(other_fs, k=args.k, seed=args.seed)
    words = {
        args.space: [c["keywords"] for c in clusters],
        other: [c["keywords"] for c in maps.describe(ws, args.name, other_fs, other_clustering)],
    }
    with progress_bar("disagreement", unit="step", unit_scale=False) as bar:
        found = disagreement(
            Space(args.space, fs, clustering.labels),
            Space(other, other_fs, other_clustering.labels),
            on_progress=bar,
        )
    for row in found["clusters"]:
        row["keywords"] = words[row["space"]][row["cluster"]]
    lines = [
        "where the spaces disagree (0: as tight in the other space as its own clusters; "
        "1: as spread as random rows):"
    ]
    if not found["clusters"]:
        lines.append("  (no cluster has 2 or more rows: nothing to compare)")
    for row in found["clusters"][:DISAGREEMENT_LINES]:
        pieces = ", ".join(f"{p['cluster']} ({p['rows']})" for p in row["splits_into"])
        lines.append(
            f"  {row['score']:5.2f}  {row['space']} cluster {row['cluster']} ({row['size']} rows) "
            f"spreads over {row['other_clusters']} {row['other_space']} clusters: {pieces}"
            f"  [{', '.join(row['keywords'])}]"
        )
    return found, lines


def _numbers(text: str | None, flag: str) -> tuple[int, ...]:
    """Numbers from "3,7,12" (cluster ids, rows, group ids); "auto" or nothing: none."""
    if not text or text == "auto":
        return ()
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UserError(f"{flag} {text!r}: give numbers separated by commas, like 3,7,12") from None


# the settings fields that are flags of synthesize (besides --clusters, and --seed: the
# features' seed)
SYNTHESIS_FLAGS = (
    "selection",
    "target",
    "rounds",
    "solutions",
    "problems_per_prompt",
    "k",
    "sparse_below",
    "cap",
    "verifier",
)
LLM_FLAGS = (
    "concurrency",
    "timeout",
    "price_in",
    "price_out",
    "max_requests",
    "max_tokens_total",
)


def _given(args: argparse.Namespace, settings: type, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of settings fields from their flags (argument `flat_name`)."""
    return {name: getattr(args, flat_name(settings, name)) for name in names}


def cmd_synthesize(args: argparse.Namespace) -> Result:
    from core import synthesis
    from core.errors import OutOfRange
    from core.llm import LLMSettings

    ws = _workspace(args)
    api_key = os.environ.get(args.api_key_env) or None
    if args.resume:
        run_id = args.resume
        info = synthesis.run_info(ws, run_id)
        if info["dataset"] != args.name:
            raise UserError(
                f"run {run_id} belongs to dataset {info['dataset']!r}, not {args.name!r}"
            )
    else:
        if not args.base_url or not args.model:
            raise UserError("give --base-url and --model (or --resume RUN)")
        proxy, config, runtime = feature_request(args)
        try:
            settings = synthesis.SynthesisSettings(
                clusters=_numbers(args.clusters, "--clusters"),
                seed=args.seed,
                **_given(args, synthesis.SynthesisSettings, SYNTHESIS_FLAGS),
            )
            llm = LLMSettings(
                base_url=args.base_url,
                model=args.model,
                **_given(args, LLMSettings, LLM_FLAGS),
            )
            run_id = synthesis.create_run(
                ws,
                args.name,
                llm=llm,
                settings=settings,
                proxy=proxy,
                config=config,
                runtime=runtime,
            )
        except OutOfRange as e:  # a setting whose range depends on the data (--clusters)
            owner = next(
                c
                for c in (synthesis.SynthesisSettings, LLMSettings)
                if e.field in c.__dataclass_fields__
            )
            raise UserError(f"{flag_of(owner, e.field)} {e.problem}") from None
        features_for(args, ws, args.name)  # the seed's, computed first when missing
    print(
        f"run {run_id}: {'resumed' if args.resume else 'started'} (resume it with --resume {run_id})",
        file=sys.stderr,
    )
    target = synthesis.run_info(ws, run_id)["settings"]["synthesis"]["target"]
    try:
        with progress_bar(f"run {run_id} accepted", unit="sample", unit_scale=False) as bar:
            summary = synthesis.run_synthesis(
                ws,
                run_id,
                api_key=api_key,
                on_update=lambda s: bar(min(s["accepted"], target), target),
            )
    except synthesis.RunFailed as e:
        raise UserError(f"{e} (resume it with --resume {run_id})") from None
    counts = summary["counts"]
    lines = [
        f"run {run_id}: {summary['state']}, {summary['accepted']} accepted of {target} wanted",
        "rejected: " + (", ".join(f"{k}: {v}" for k, v in summary["rejected"].items()) or "none"),
        f"G-Vendi {summary['g_vendi_before']:.2f} before, {summary['g_vendi_after']:.2f} after",
        f"requests sent {counts['requests_sent']}, from the log {counts['requests_from_log']}, "
        f"failed {counts['requests_failed']}, "
        f"tokens {counts['prompt_tokens'] + counts['completion_tokens']}, "
        f"cost {counts['cost']:.4f}",
    ]
    if summary.get("note"):
        lines.append(summary["note"])
    return summary, lines


def cmd_runs(args: argparse.Namespace) -> Result:
    from core import filled, synthesis

    ws = _workspace(args)
    if args.name and ws.catalogue.run(args.name) is not None:  # a run: what it filled
        table = filled.fill_table(ws, args.name, repeats=args.repeats, seed=args.seed)
        return table, _fill_lines(table)
    if args.name and not ws.has_dataset(args.name):
        datasets = ", ".join(d.name for d in ws.datasets()) or "none"
        runs = ", ".join(r["id"] for r in synthesis.list_runs(ws)[:5]) or "none"
        raise UserError(
            f"no dataset or synthesis run named {args.name!r} in this workspace "
            f"(datasets: {datasets}; recent runs: {runs})"
        )
    runs = synthesis.list_runs(ws, args.name)
    data = {
        "runs": [
            {
                "run": r["id"],
                "dataset": r["dataset"],
                "state": r["state"],
                "accepted": r["counts"]["accepted"],  # from the items, overrides applied
                "rejected": r["counts"]["rejected"],
                "g_vendi_before": r["g_vendi_before"],
                "g_vendi_after": r["g_vendi_after"],
                "usage": r["usage"],  # requests, tokens and cost of its last invocation
                "created_at": r["created_at"],
                "error": r["error"],
            }
            for r in runs
        ]
    }
    lines = [
        f"{r['run']}  {r['dataset']:<16} {r['state']:<11} accepted {r['accepted']:>5}  {r['created_at']}"
        + (f"  ({r['error']})" if r["error"] else "")
        for r in data["runs"]
    ]
    return data, lines or ["no synthesis runs yet"]


def _fill_lines(table: dict[str, Any]) -> list[str]:
    """`runs RUN` as text: the run's counts, a row per map cluster, the whole set."""

    def score(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    counts = table["counts"]
    lines = [
        f"run {table['run']} ({table['dataset']}, {table['state']}): {counts['items']} items, "
        f"{counts['accepted']} accepted, {counts['rejected_total']} rejected, "
        f"{counts['pending']} pending; clusters of the map (k = {table['k']})",
        f"{'cluster':>7} {'sparse':>6} {'size':>5} {'made for':>8} {'accepted':>8} "
        f"{'rejected':>8} {'pending':>7} {'G-Vendi before':>14} {'after':>6}  rejections",
    ]
    for r in table["clusters"]:
        cluster = "none" if r["cluster"] is None else str(r["cluster"])
        sparse = "-" if r["sparse"] is None else "yes" if r["sparse"] else "no"
        reasons = ", ".join(f"{k}: {v}" for k, v in r["rejected"].items())
        lines.append(
            f"{cluster:>7} {sparse:>6} {r['size_before']:>5} {r['made_for']:>8} "
            f"{r['accepted']:>8} {r['rejected_total']:>8} {r['pending']:>7} "
            f"{score(r['g_vendi_before']):>14} {score(r['g_vendi_after']):>6}  {reasons}".rstrip()
        )
    whole = table["whole"]
    lines.append(
        f"whole set: G-Vendi {whole['g_vendi_before']:.2f} ({whole['rows_before']} rows) -> "
        f"{whole['g_vendi_after']:.2f} ({whole['rows_after']} rows), {whole['gain']:+.2f}"
    )
    if equal := whole["equal_size"]:
        lines.append(
            f"equal size: {equal['rows']} rows, {equal['swapped']} random seed rows swapped for "
            f"the accepted: {equal['mean']:.2f} (sd {equal['sd']:.2f}, {equal['repeats']} draws) "
            f"against {equal['seed_g_vendi']:.2f} for the seed, {equal['gain']:+.2f} beyond size"
        )
    else:
        lines.append(f"equal size: none ({whole['equal_size_note']})")
    return lines


def _map_labels(args: argparse.Namespace, ws, name: str):
    """The map's cluster of each row when the features for these settings exist, else None."""
    from core.features import find_features
    from core.maps import clusters_for

    proxy, config, _ = feature_request(args)
    fs = find_features(ws, name, proxy=proxy, config=config)
    return (fs, clusters_for(fs, seed=config.seed).labels) if fs else (None, None)


def cmd_export(args: argparse.Namespace) -> Result:
    from core import curation, export
    from core.files import TargetExists

    ws = _workspace(args)
    include = curation.check_include([s.strip() for s in args.include.split(",") if s.strip()])
    ws.dataset(args.name)
    _, labels = _map_labels(args, ws, args.name)
    with progress_bar(f"exporting {args.name}", unit="row") as bar:
        try:
            data = export.export_curated(
                ws,
                args.name,
                args.out,
                format=args.format,
                include=include,
                provenance=not args.no_provenance,
                overwrite=args.overwrite,
                clusters=labels,
                on_progress=bar,
            )
        except TargetExists as e:
            raise UserError(f"{e}; pass --overwrite to replace it") from None
    return data, [f"wrote {data['rows']:,} rows to {data['path']} ({data['format']})"]


def cmd_duplicates(args: argparse.Namespace) -> Result:
    from core import curation

    ws = _workspace(args)
    fs = features_for(args, ws, args.name) if not args.text_only else None
    with progress_bar(f"near-duplicates in {args.name}", unit="row") as bar:
        groups = curation.duplicate_groups(
            ws, args.name, fs, threshold=args.threshold, on_progress=bar
        )
    resolved = 0
    if args.resolve:
        wanted = (
            range(len(groups)) if args.resolve == "all" else _numbers(args.resolve, "--resolve")
        )
        unknown = [i for i in wanted if not 0 <= i < len(groups)]
        if unknown:
            known = f"groups 0 to {len(groups) - 1}" if groups else "no groups"
            raise UserError(f"--resolve {unknown[0]}: there are {known}; nothing was removed")
        resolved = curation.resolve_groups(ws, args.name, [groups[i] for i in wanted])
    search = None if fs is None else curation.pair_search(ws, args.name)
    data = {"groups": groups, "resolved": resolved, "threshold": args.threshold, "search": search}
    lines = [
        f"{len(groups)} near-duplicate groups in {args.name!r}"
        + (f" (gradient search: {search})" if search else "")
        + (f"; {resolved} rows removed, the first of each group kept" if args.resolve else "")
    ]
    lines += [
        f"  group {g['group']} ({g['kind']}): rows {g['rows']}  {g['prompt'][:60]!r}"
        for g in groups[:50]
    ]
    return data, lines


def cmd_select(args: argparse.Namespace) -> Result:
    from core.selection import most_diverse

    ws = _workspace(args)
    ws.dataset(args.name)  # an unknown dataset fails before features are computed
    if args.save is not None and not args.save.strip():
        raise UserError("--save: give the selection a name")
    gradient = features_for(args, ws, args.name)
    label = f"selecting {args.size} rows of {args.name}"
    with progress_bar(label, unit="step", unit_scale=False) as bar:
        data = most_diverse(
            ws,
            args.name,
            gradient,
            args.size,
            method=args.how,
            sentence_space=not args.no_sentence,
            runtime=feature_request(args)[2],
            seed=args.select_seed,
            draws=args.draws,
            save=args.save,
            on_progress=bar,
        )
    return data, selection_lines(data, args.name)


def selection_lines(data: dict, name: str) -> list[str]:
    """The subsets compared by `select`, as a table: G-Vendi in each space."""
    spaces = list(data["subsets"][0]["g_vendi"])
    header = ["subset", *(f"{space} G-Vendi" for space in spaces)]
    table = [
        [
            ("* " if s["chosen"] else "  ")
            + s["subset"]
            + (f" ({s['draws']} draws)" if "sd" in s else ""),
            *(
                f"{s['g_vendi'][space]:.2f}" + (f" +- {s['sd'][space]:.2f}" if "sd" in s else "")
                for space in spaces
            ),
        ]
        for s in data["subsets"]
    ]
    widths = [max(len(row[k]) for row in [header, *table]) for k in range(len(header))]
    lines = [
        f"{data['method']} selection of {data['size']:,} of {data['curated_rows']:,} curated "
        f"rows of {name} (* the rows chosen):"
    ]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *table]
    ]
    if data.get("sentence_error"):
        lines.append(f"sentence space unavailable: {data['sentence_error']}")
    if data["saved"]:
        lines.append(
            f"saved as selection {data['saved']!r}; to keep only these rows: "
            f"python -m core curate {shlex.quote(name)} --keep-selection "
            f"{shlex.quote(data['saved'])}"
        )
    return lines


def cmd_curate(args: argparse.Namespace) -> Result:
    from core import curation, diversity

    ws = _workspace(args)
    info = ws.dataset(args.name)
    by_hand = list(_numbers(args.remove_rows, "--remove-rows"))
    outside = [r for r in by_hand if not 0 <= r < info.rows]
    if outside:  # checked before any change: a bad flag changes nothing
        raise UserError(
            f"--remove-rows {outside[0]}: rows are 0 to {info.rows - 1}; nothing was changed"
        )
    selected = (
        ws.selection(args.name, args.remove_selection)["rows"] if args.remove_selection else []
    )
    kept = ws.selection(args.name, args.keep_selection)["rows"] if args.keep_selection else None
    changed = 0
    if args.restore:
        changed -= curation.restore_rows(ws, args.name)
    if selected:
        changed += curation.remove_rows(
            ws, args.name, selected, f"selection {args.remove_selection}"
        )
    if kept is not None:
        changed += curation.keep_only(
            ws, args.name, kept, f"outside selection {args.keep_selection}"
        )
    if by_hand:
        changed += curation.remove_rows(ws, args.name, by_hand, "by hand")
    if args.remove_redundant:
        fs = features_for(args, ws, args.name)
        rows = [
            r["row"] for r in diversity.redundant(ws, args.name, fs, limit=args.remove_redundant)
        ]
        changed += curation.remove_rows(ws, args.name, rows, "redundant (lowest marginal value)")
    fs, labels = _map_labels(args, ws, args.name)
    data = curation.summary(ws, args.name, clusters=labels)
    if fs is not None:
        data["g_vendi"] = curation.curated_g_vendi(ws, args.name, fs)
    lines = [
        f"curated {args.name!r}: {data['rows']:,} rows "
        + ", ".join(f"{k} {v:,}" for k, v in data["by_source"].items())
        + f"; {data['removed']:,} seed rows removed"
    ]
    if "g_vendi" in data:
        lines.append(f"G-Vendi of the curated set: {data['g_vendi']:.2f}")
    lines += [f"note: {note}" for note in data["notes"]]
    return data, lines


def cmd_demo(args: argparse.Namespace) -> Result:
    from core import demo

    if args.out:
        n = demo.write_jsonl(Path(args.out))
        return {"rows": n, "path": args.out}, [f"wrote {n} demo problems to {args.out}"]
    info = demo.ensure_demo(_workspace(args), force=True)
    return {"dataset": info.name, "rows": info.rows}, [f"dataset {info.name!r}: {info.rows} rows"]


# --- the parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from core.config import (
        SELECTION_METHODS,
        SPACES,
        FeatureConfig,
        ProxySpec,
        Runtime,
        SynthesisSettings,
    )
    from core.llm import LLMSettings

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace", metavar="DIR", help="workspace folder (default: $PRISM_WORKSPACE or ./cache)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    mapping = argparse.ArgumentParser(add_help=False)
    g = mapping.add_argument_group("field mapping (detected from common names when omitted)")
    g.add_argument(
        "--prompt",
        metavar="X",
        help='prompt: field, dotted path, or template like "{Body} {Question}"',
    )
    g.add_argument("--response", metavar="Y", help="response: field, dotted path, or template")
    g.add_argument(
        "--messages", metavar="FIELD", help="a chat field (list of role/content) instead"
    )
    g.add_argument("--id", metavar="FIELD", help="a field with unique ids (default: row numbers)")
    g.add_argument("--split", help="split of a Hugging Face dataset")
    g.add_argument("--subset", help="configuration of a Hugging Face hub dataset")
    g.add_argument(
        "--limit",
        type=_within(int, Bound(low=1), "--limit"),
        metavar="N",
        help="read at most N rows",
    )
    g.add_argument("--encoding", help="text encoding of the file (default UTF-8)")

    parser = _Parser(
        prog="python -m core", description="Prism Studio: gradient-space data curation."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    def verb(
        name: str, run: Callable[[argparse.Namespace], Result], help: str, *parents
    ) -> _Parser:
        p = verbs.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(run=run)
        return p

    p = verb(
        "validate",
        cmd_validate,
        "read a file and report on it; the workspace is not touched",
        mapping,
    )
    p.add_argument("path", help="a file, a save_to_disk folder, or a Hugging Face dataset name")
    p = verb("import", cmd_import, "import a file or dataset into the workspace", mapping)
    p.add_argument("path", help="a file, a save_to_disk folder, or a Hugging Face dataset name")
    p.add_argument("--name", help="dataset name (default: from the file name)")
    p.add_argument("--replace", action="store_true", help="replace a dataset of the same name")
    verb("datasets", cmd_datasets, "list the datasets in the workspace")
    p = verb("rename", cmd_rename, "rename a dataset")
    p.add_argument("old")
    p.add_argument("new")
    p = verb("delete", cmd_delete, "delete a dataset")
    p.add_argument("name")
    features = argparse.ArgumentParser(add_help=False)
    g = features.add_argument_group("gradient features")
    for settings in (ProxySpec, FeatureConfig, Runtime):
        add_settings(g, settings)

    p = verb(
        "embed",
        cmd_embed,
        "compute (or fetch from the cache) a dataset's gradient features",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="also write the N x dim float32 matrix in row order, with its settings: "
        "FILE.safetensors (settings in its header), or FILE.npy and FILE.npy.json; "
        "features-import reads either back as this feature set",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (else refused)"
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="only say how long computing the features takes here (a short timed batch) and "
        "the data's token counts; nothing is computed or stored",
    )
    p = verb(
        "features-import",
        cmd_features_import,
        "attach vectors computed elsewhere (N x d: .npy, .parquet, .safetensors) as a feature "
        "set of a dataset",
    )
    p.add_argument("name", help="dataset name")
    p.add_argument("file", help="the vectors: .npy, .parquet or .safetensors")
    p.add_argument(
        "--id-column",
        metavar="COLUMN",
        help="match rows to the dataset's record ids by this column (Parquet) or tensor "
        "(safetensors; default: a tensor named ids, if any) instead of in dataset order",
    )
    p.add_argument(
        "--column",
        metavar="COLUMN",
        help="the vectors' column (Parquet) or tensor (safetensors) when there are several",
    )
    p = verb("features", cmd_features, "list the feature sets of a dataset, imported ones too")
    p.add_argument("name", help="dataset name")
    p = verb(
        "score",
        cmd_score,
        "G-Vendi of a dataset (features are computed first when missing)",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--q",
        type=_q,
        default="1",
        help="Vendi order besides q = 1: a number or inf (default: %(default)s)",
    )
    p.add_argument("--by", metavar="FIELD|cluster|source", help="also score each group of rows")
    p.add_argument(
        "--k",
        type=_cluster_k("--k"),
        help="clusters for --by cluster: a count, or a fraction of the rows",
    )
    p.add_argument(
        "--bootstrap",
        type=_within(int, Bound(low=0, high=100_000), "--bootstrap"),
        default=0,
        metavar="B",
        help="a bootstrap interval from B replicates",
    )
    p.add_argument(
        "--redundant",
        type=_within(int, Bound(low=0), "--redundant"),
        default=0,
        metavar="N",
        help="list the N most redundant samples",
    )
    p.add_argument(
        "--baselines", action="store_true", help="sentence-embedding Vendi, distinct-n, lengths"
    )
    p = verb(
        "compare",
        cmd_compare,
        "G-Vendi of several datasets under the same proxy and projection",
        features,
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset names")
    p.add_argument(
        "--equal-size", action="store_true", help="also score equal-size random subsamples"
    )
    p.add_argument(
        "--repeats",
        type=_within(int, Bound(low=1, high=10_000), "--repeats"),
        default=5,
        help="subsample draws with --equal-size (default: %(default)s)",
    )
    p.add_argument("--q", type=_q, default="1", help="Vendi order (default: %(default)s)")
    p = verb(
        "map",
        cmd_map,
        "clusters of a dataset in gradient (or sentence) space, the sparse ones marked",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--k",
        type=_cluster_k("--k"),
        help="clusters: a count, or a fraction of the rows (default: about sqrt(N/2))",
    )
    add_settings(p, SynthesisSettings, "sparse_below", sparse_below={"metavar": "P"})
    p.add_argument("--layout", action="store_true", help="also compute (and cache) the 2-D layout")
    p.add_argument(
        "--space",
        choices=SPACES,
        default="gradient",
        help="gradient: the features of the feature flags; sentence: the sentence embeddings "
        "of the diversity baseline (all-MiniLM-L6-v2), whatever those flags say "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--disagreement",
        action="store_true",
        help="also rank the clusters of both spaces by how spread their rows are in the "
        "other space (its features and clusters computed first when missing)",
    )
    p = verb(
        "synthesize",
        cmd_synthesize,
        "generate samples for thin clusters with an OpenAI-compatible LLM",
        features,
    )
    p.add_argument("name", help="dataset name")
    g = p.add_argument_group("generator")
    add_settings(g, LLMSettings, "base_url", "model")
    g.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: %(default)s); never stored",
    )
    add_settings(g, LLMSettings, *LLM_FLAGS)
    g = p.add_argument_group("targets and acceptance")
    add_settings(
        g,
        SynthesisSettings,
        "clusters",
        *SYNTHESIS_FLAGS,
        clusters={"default": "auto", "metavar": "IDS|auto"},
        k={"type": _cluster_k("--k")},
    )
    g.add_argument(
        "--resume", metavar="RUN", help="continue a run; finished requests are not sent again"
    )
    p = verb(
        "runs",
        cmd_runs,
        "list synthesis runs with their state and counts, or what one run filled",
    )
    p.add_argument(
        "name",
        nargs="?",
        metavar="NAME|RUN",
        help="a dataset: only its runs; a run id: what it filled, per cluster of the map "
        "(size, accepted, rejected by reason, G-Vendi before and after) and in the whole set",
    )
    p.add_argument(
        "--repeats",
        type=_within(int, Bound(low=0, high=1000), "--repeats"),
        default=5,
        help="with a run: draws of the equal-size comparison, 0 for none (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=_within(int, Bound(low=0), "--seed"),
        default=0,
        help="with a run: the seed of those draws (default: %(default)s)",
    )
    p = verb(
        "export",
        cmd_export,
        "write the curated set (kept seed + accepted synthetic) for training",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="the file (or folder, for --format hf) to write",
    )
    p.add_argument(
        "--format",
        choices=["messages", "prompt-response", "parquet", "hf"],
        default="messages",
        help="JSONL with chat messages (default), JSONL prompt/response, Parquet, or a save_to_disk folder",
    )
    p.add_argument(
        "--include", default="seed,synthetic", help="seed, synthetic or both (default: %(default)s)"
    )
    p.add_argument(
        "--no-provenance",
        action="store_true",
        help="leave out source, cluster, run, round, generator, exemplar_ids and votes "
        "(each row keeps its id)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the target if it exists (else refused)"
    )
    p = verb(
        "select",
        cmd_select,
        "choose the N curated rows that maximise G-Vendi, beside random subsets of N",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--size",
        type=_within(int, Bound(low=1), "--size"),
        required=True,
        metavar="N",
        help="rows to choose",
    )
    p.add_argument(
        "--how",  # --method is the feature method's flag
        choices=SELECTION_METHODS,
        default="greedy",
        help="greedy: log-det gain in gradient space; sentence: the same in sentence-embedding "
        "space; random: a uniform draw (default: %(default)s)",
    )
    p.add_argument(
        "--no-sentence",
        action="store_true",
        help="compare in gradient space only (no sentence embeddings computed)",
    )
    p.add_argument(
        "--select-seed",  # --seed is the feature projection's flag
        type=_within(int, Bound(low=0), "--select-seed"),
        default=0,
        help="seed of the random pools and draws (default: %(default)s)",
    )
    p.add_argument(
        "--draws",
        type=_within(int, Bound(low=1, high=1000), "--draws"),
        default=5,
        help="random subsets for the baseline (default: %(default)s)",
    )
    p.add_argument("--save", metavar="AS", help="save the chosen rows as this selection")
    p = verb(
        "duplicates",
        cmd_duplicates,
        "near-duplicate groups: the same text or gradient cosine above a threshold",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--threshold",
        type=_within(float, Bound(low=0, high=1, above=True), "--threshold"),
        default=0.98,
        help="gradient cosine (default: %(default)s)",
    )
    p.add_argument(
        "--text-only", action="store_true", help="only the same text, no features needed"
    )
    p.add_argument(
        "--resolve", metavar="all|IDS", help="keep the first row of these groups, remove the rest"
    )
    p = verb(
        "curate",
        cmd_curate,
        "remove seed rows from the curated set, or restore them; show its summary",
        features,
    )
    p.add_argument("name", help="dataset name")
    p.add_argument(
        "--remove-selection", metavar="NAME", help="remove the rows of a saved selection"
    )
    p.add_argument(
        "--keep-selection",
        metavar="NAME",
        help="remove every seed row outside a saved selection (e.g. one `select --save` made)",
    )
    p.add_argument("--remove-rows", metavar="ROWS", help="remove these rows (comma-separated)")
    p.add_argument(
        "--remove-redundant",
        type=_within(int, Bound(low=1), "--remove-redundant"),
        metavar="N",
        help="remove the N most redundant samples",
    )
    p.add_argument("--restore", action="store_true", help="put every removed row back first")
    p = verb("demo", cmd_demo, "import the built-in demo dataset (or write it to --out)")
    p.add_argument(
        "--out", metavar="FILE.jsonl", help="write the demo problems to this file instead"
    )
    return parser


def _internal(e: Exception) -> int:
    """Report a fault of the code (not of the input): one line, the traceback on request."""
    if os.environ.get("PRISM_DEBUG"):
        traceback.print_exc()
    print(
        f"internal error: {type(e).__name__}: {e} (set PRISM_DEBUG=1 for details)",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        data, lines = args.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except FileNotFoundError as e:
        from core.workspace import dataset_vanished

        vanished = dataset_vanished(e, getattr(args, "workspace", None))
        if vanished is None:
            return _internal(e)
        print(f"error: {vanished}", file=sys.stderr)
        return 2
    except Exception as e:
        return _internal(e)
    try:
        if args.json:
            print(json.dumps(data, ensure_ascii=False, default=str))
        else:
            print("\n".join(lines))
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stderr.close()
        return 0
    for warning in data.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
