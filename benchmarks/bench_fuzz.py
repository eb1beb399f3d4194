"""Mutation fuzzing at scale (run on its own: ``python benchmarks/bench_fuzz.py``; not a test).

The machinery of ``tests/test_fuzz.py`` on 10^5 mutated courses (20 seeds x 5,000): every mutant is
validated, every valid one simulated (nominal parameters, batched by output grid) and every output
checked for NaN, infinity and physical range. Then a sample of mutants goes through the command
line (``microneedling simulate`` in process) to check that every one exits 0 or 2 with no traceback.

Prints: mutants, refused, valid, simulated, engine refusals, crashes by signature (exception,
message, place), out-of-range outputs by variable, and the time of each part.

    python benchmarks/bench_fuzz.py [--n 100000] [--seeds 20] [--cli 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_fuzz import FuzzReport, mutants, run_fuzz  # noqa: E402


def merge(total: FuzzReport, part: FuzzReport) -> None:
    total.n += part.n
    total.refused += part.refused
    total.valid += part.valid
    total.simulated += part.simulated
    total.engine_refused.update(part.engine_refused)
    total.crashes.update(part.crashes)
    total.violations.update(part.violations)
    for k, v in part.examples.items():
        total.examples.setdefault(k, v)
    total.seconds += part.seconds


def cli_sample(n: int, seed: int) -> tuple[Counter[int], list[str], float]:
    """``n`` mutants through ``microneedling simulate`` (in process): exit codes, and the
    outputs that showed a traceback or an exit code other than 0 (written) or 2 (refused)."""
    from typer.testing import CliRunner

    from microneedling.cli.app import app
    from microneedling.io import dumps_toml

    runner = CliRunner()
    codes: Counter[int] = Counter()
    bad: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (d, edits) in enumerate(mutants(seed, n)):
            course = Path(tmp) / f"c{i}.toml"
            try:
                course.write_text(dumps_toml(d), encoding="utf-8")
            except (TypeError, ValueError):  # not representable as TOML (e.g. NaN keys): JSON
                course = course.with_suffix(".json")
                course.write_text(json.dumps(d, default=str), encoding="utf-8")
            out = Path(tmp) / f"run{i}"
            res = runner.invoke(
                app,
                ["simulate", str(course), "--out", str(out), "--draws", "0", "--no-figures", "-q"],
            )
            codes[res.exit_code] += 1
            if res.exit_code not in (0, 2) or "Traceback" in res.output:
                bad.append(f"exit {res.exit_code} after {edits}: {res.output[-300:]!r}")
    return codes, bad, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="mutants in all")
    ap.add_argument("--seeds", type=int, default=20, help="seeds the mutants are split over")
    ap.add_argument("--cli", type=int, default=300, help="mutants also run through the CLI")
    args = ap.parse_args()

    total = FuzzReport()
    per = args.n // args.seeds
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        part = run_fuzz(seed=1000 + seed, n=per)
        merge(total, part)
        print(
            f"seed {1000 + seed}: {part.n} mutants, {part.refused} refused, {part.valid} valid, "
            f"{part.simulated} simulated, {sum(part.crashes.values())} crashes, "
            f"{sum(part.violations.values())} out of range, {part.seconds:.1f} s",
            flush=True,
        )
    wall = time.perf_counter() - t0
    print()
    print(f"mutants            {total.n}")
    print(f"refused (own error) {total.refused} ({100 * total.refused / total.n:.1f}%)")
    print(f"valid              {total.valid}")
    print(f"simulated          {total.simulated}")
    print(f"engine refusals    {sum(total.engine_refused.values())}")
    for k, v in total.engine_refused.most_common():
        print(f"  {v:6d}  {k}")
    print(f"crashes            {sum(total.crashes.values())} ({len(total.crashes)} signatures)")
    for k, v in total.crashes.most_common():
        print(f"  {v:6d}  {k}\n          e.g. {total.examples[k][:200]}")
    print(f"out of range       {sum(total.violations.values())} ({len(total.violations)} kinds)")
    for k, v in total.violations.most_common():
        print(f"  {v:6d}  {k}\n          e.g. {total.examples[k][:200]}")
    print(f"time               {wall:.0f} s ({1e3 * wall / max(total.n, 1):.2f} ms per mutant)")
    if args.cli:
        codes, bad, secs = cli_sample(args.cli, seed=99)
        print(
            f"CLI sample         {sum(codes.values())} mutants through `microneedling simulate`: "
            f"exit codes {dict(sorted(codes.items()))}, {len(bad)} with a traceback or another "
            f"exit code, {secs:.0f} s"
        )
        for b in bad[:10]:
            print("  ", b)


if __name__ == "__main__":
    main()
