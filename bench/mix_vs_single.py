"""Plumbing check on real data: at equal size, a mix of five math benchmarks should score
higher than each benchmark alone, in G-Vendi and in the sentence-embedding baseline.

The five are the largest sets in ../shared/data/math-benchmarks (college_math, asdiv,
svamp, olympiadbench, minerva_math); each single set is a seeded random sample of `--size` rows, and the
mix takes `--size / 5` rows from each. With the
tiny-random proxy the gradient space is that of a random model, so this checks the
plumbing, not the method.

    python bench/mix_vs_single.py [--size 250] [--proxy tiny-random] [--dim 1024] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import parse_args, shared_data
from core.config import SENTENCE, FeatureConfig, ProxySpec

# core.diversity, core.records, core.sentence and core.workspace (which load torch and
# pyarrow) are imported after the flags are read, so that `--help` and importing this file
# stay instant.

SETS = {  # name: (file, prompt, response)
    "college_math": ("math-benchmarks/college_math.jsonl", "question", "answer"),
    "asdiv": ("math-benchmarks/asdiv.jsonl", "{body} {question}", "answer"),
    "svamp": ("math-benchmarks/svamp.jsonl", "{Body} {Question}", "Answer"),
    "olympiadbench": (
        "math-benchmarks/olympiadbench.jsonl",
        "question",
        "{solution}\\n\\nFinal answer: {final_answer}",
    ),
    "minerva_math": ("math-benchmarks/minerva_math.jsonl", "problem", "solution"),
}


def sample(path: Path, size: int, rng: np.random.Generator) -> list[dict]:
    rows = [json.loads(line) for line in path.open()]
    return [rows[i] for i in rng.choice(len(rows), size, replace=False)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--proxy", default="tiny-random")
    parser.add_argument(
        "--dim", type=int, default=FeatureConfig().dim, help="gradient feature dimension"
    )
    args = parse_args(parser, {"size": 10, "dim": 128}, argv)
    data = shared_data()
    from core.diversity import compare
    from core.records import Mapping, iter_records
    from core.sentence import SENTENCE_MODEL
    from core.workspace import Workspace

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        mix = []
        for name, (file, prompt, response) in SETS.items():
            rows = sample(data / file, args.size, rng)
            path = Path(tmp) / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            ws.import_dataset(path, name=name, mapping=Mapping(prompt=prompt, response=response))
            part = list(iter_records(ws.dataset(name).path))[: args.size // len(SETS)]
            mix += [{"prompt": r.prompt, "response": r.response} for r in part]
        path = Path(tmp) / "mix.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in mix))
        ws.import_dataset(path, name="mix-of-five")
        names = [*SETS, "mix-of-five"]
        spaces = {
            f"G-Vendi ({args.proxy})": (ProxySpec(args.proxy), FeatureConfig(dim=args.dim)),
            "sentence-embedding Vendi": (ProxySpec(SENTENCE_MODEL), FeatureConfig(method=SENTENCE)),
        }
        results = {label: compare(ws, names, proxy=p, config=c) for label, (p, c) in spaces.items()}
    print(
        f"{args.size} rows per dataset (the mix: {args.size // len(SETS)} from each of the five)\n"
    )
    print(f"| dataset | {' | '.join(results)} |")
    print(f"| --- | {' | '.join('---:' for _ in results)} |")
    for i, name in enumerate(names):
        cells = [f"{r['datasets'][i]['g_vendi']:.2f}" for r in results.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    for label, r in results.items():
        scores = {d["name"]: d["g_vendi"] for d in r["datasets"]}
        best_single = max(v for k, v in scores.items() if k != "mix-of-five")
        verdict = "higher" if scores["mix-of-five"] > best_single else "NOT higher"
        print(
            f"\n{label}: the mix scores {verdict} than every single benchmark "
            f"({scores['mix-of-five']:.2f} vs best single {best_single:.2f})"
        )


if __name__ == "__main__":
    main()
