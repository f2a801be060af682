"""Keep the N most diverse: the greedy subset's G-Vendi against random subsets, and its time.

1. gsm8k train (../shared/data, 7,473 rows), N = 10%: `select` chooses N rows greedily in
   gradient space and in sentence-embedding space, and draws random subsets of N; each is
   measured in both spaces. Prints the table and the margin of the greedy subset over
   random (ratio of the means, and in standard deviations of the random draws). The proxy
   is tiny-random unless --proxy names another (random weights: it checks the selection
   against its own space, not the proxy's quality).
2. Scale: N = 10% chosen from --scale-rows x --dim synthetic features (uneven clusters, a
   workspace built as bench/scale_1m.py builds one), `select --no-sentence` in its own
   process, beside `score` (one G-Vendi pass over all rows) in its own process as the
   reference.

    python bench/select_diverse.py [--rows N] [--scale-rows R] [--dim D] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import parse_args, shared_data

# numpy and the core modules that load torch and pyarrow are imported after the flags are
# read, so that `--help` and importing this file stay instant.


def gsm8k_table(folder: Path, rows: int | None, proxy: str, draws: int) -> None:
    """Part 1: the subsets of 10% of gsm8k train, measured in both spaces."""
    from bench.scale_1m import run_verb

    data = shared_data() / "gsm8k" / "train.jsonl"
    if rows is not None:
        lines = data.read_text().splitlines(keepends=True)[:rows]
        data = folder / "train.jsonl"
        data.write_text("".join(lines))
    ws = folder / "gsm8k-ws"
    run_verb(["import", str(data), "--name", "gsm8k"], ws)
    total = rows or 7473
    size = total // 10
    seconds, _ = run_verb(
        ["select", "gsm8k", "--size", str(size), "--proxy", proxy, "--draws", str(draws),
         "--json"],
        ws,
    )  # fmt: skip
    out = run_verb.last
    print(f"gsm8k train, {total:,} rows: N = {size:,} (10%), proxy {proxy}, {seconds:.1f} s")
    spaces = list(out["subsets"][0]["g_vendi"])
    print("| subset | " + " | ".join(f"G-Vendi, {s} space" for s in spaces) + " |")
    print("| --- |" + " ---: |" * len(spaces))
    for s in out["subsets"]:
        cells = [
            f"{s['g_vendi'][space]:.2f}" + (f" +- {s['sd'][space]:.2f}" if "sd" in s else "")
            for space in spaces
        ]
        print(f"| {s['subset']} | " + " | ".join(cells) + " |")
    greedy, random = out["subsets"][0], out["subsets"][-1]
    for space in spaces:
        mean, sd = random["g_vendi"][space], random["sd"][space]
        gain = greedy["g_vendi"][space] - mean
        sds = f"{gain / sd:+.1f} sd" if sd > 0 else "sd 0"
        print(
            f"greedy (gradient) / random, {space} space: "
            f"{greedy['g_vendi'][space] / mean:.2f}x ({sds} of {random['draws']} draws)"
        )


def scale_run(folder: Path, rows: int, dim: int) -> None:
    """Part 2: 10% of `rows` x `dim` synthetic features chosen, timed beside `score`."""
    from bench.scale_1m import NAME, build_workspace, run_verb

    ws, _ = build_workspace(folder / "scale", rows, dim)
    flags = ["--proxy", "tiny-random", "--dim", str(dim)]
    size = rows // 10
    reference, _ = run_verb(["score", NAME, *flags], ws.root)
    seconds, peak = run_verb(
        ["select", NAME, "--size", str(size), "--no-sentence", *flags, "--json"], ws.root
    )
    out = run_verb.last
    random = out["subsets"][-1]
    print(
        f"select {size:,} of {rows:,} x {dim}: {seconds:.1f} s, peak {peak:.0f} MiB; "
        f"G-Vendi {out['g_vendi']:.1f} against random {random['g_vendi']['gradient']:.1f} "
        f"+- {random['sd']['gradient']:.1f}"
    )
    print(f"select / score (one G-Vendi pass over all rows): {seconds / reference:.2f}x the time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="the first N rows of gsm8k")
    parser.add_argument("--proxy", default="tiny-random", help="the proxy of the gsm8k features")
    parser.add_argument("--draws", type=int, default=10, help="random subsets (gsm8k)")
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--tmp", default=None, help="where the workspaces are made")
    args = parse_args(parser, {"rows": 200, "scale_rows": 5000, "dim": 64, "draws": 3}, argv)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        gsm8k_table(Path(tmp), args.rows, args.proxy, args.draws)
        scale_run(Path(tmp), args.scale_rows, args.dim)


if __name__ == "__main__":
    main()
