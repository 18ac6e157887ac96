#!/usr/bin/env python3
"""Before/after A/B of a bench binary: runs the two commands in turn, A B A B ..., for a
number of rounds, reads the throughput columns of the Markdown tables each prints
(`events/s`, `records/s`, `x copy loop (median)`), and prints per figure the median before,
the median after, and the median of the per-round ratios after/before (each pair ran
within a minute of each other, so a machine whose speed drifts hurts both alike).

    python3 benches/scripts/ab_rounds.py --rounds 5 --out /tmp/ab-ops \
        --before '/path/before/operators-bench --rounds 1' \
        --after '/path/after/operators-bench --rounds 1'

Every run's stdout and stderr are kept under --out. The figures are higher-is-better;
the verdict column says whether the median ratio is within the given tolerance below 1.
With --baseline FIGURE (a figure's name as printed, e.g. 'serde_json → struct — events/s'),
one more column divides each figure by that baseline of its own run first, which cancels
the machine's drift between runs.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys

COLUMNS = ("events/s", "records/s", "× copy loop (median)")
RUN_TIMEOUT_S = 1800


def figures(stdout):
    """{row label and column: value} for every throughput column of every table."""
    found = {}
    header = None
    for line in stdout.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        label = cells[0].replace("**", "")
        for index, name in enumerate(header):
            if name not in COLUMNS or index >= len(cells):
                continue
            try:
                value = float(cells[index].split()[0])
            except (ValueError, IndexError):
                continue
            key = f"{label} — {name}"
            n = 2
            while key in found:
                key = f"{label} #{n} — {name}"
                n += 1
            found[key] = value
    return found


def number(value):
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def run(command, path):
    with open(path + ".out", "w") as out, open(path + ".err", "w") as err:
        done = subprocess.run(
            shlex.split(command), stdout=subprocess.PIPE, stderr=err, text=True,
            timeout=RUN_TIMEOUT_S, check=False,
        )
        out.write(done.stdout)
    if done.returncode != 0:
        sys.exit(f"{command!r} exited with {done.returncode}; see {path}.err")
    return figures(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tolerance-pct", type=float, default=5.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--baseline", help="a figure to divide the others by, run by run")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        sys.exit("--rounds must be 1..=20")
    os.makedirs(args.out, exist_ok=True)
    before, after = [], []
    for r in range(1, args.rounds + 1):
        print(f"ab_rounds: round {r}: before", file=sys.stderr, flush=True)
        before.append(run(args.before, os.path.join(args.out, f"before-{r}")))
        print(f"ab_rounds: round {r}: after", file=sys.stderr, flush=True)
        after.append(run(args.after, os.path.join(args.out, f"after-{r}")))
    keys = [k for k in before[0] if all(k in f for f in before + after)]
    print(f"{args.rounds} rounds, before and after alternated; medians.\n")
    base = args.baseline if args.baseline in keys else None
    print("| figure | before | after | after ÷ before (median of rounds) | min | max |"
          f" within {args.tolerance_pct:.0f} % |" + (" same, × baseline |" if base else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |" + (" ---: |" if base else ""))
    for key in keys:
        b = [f[key] for f in before]
        a = [f[key] for f in after]
        ratios = [x / y for x, y in zip(a, b) if y > 0]
        if not ratios:
            continue
        ratio = statistics.median(ratios)
        ok = ratio >= 1 - args.tolerance_pct / 100
        row = (f"| {key} | {number(statistics.median(b))} | {number(statistics.median(a))} | "
               f"{ratio:.3f} | {min(ratios):.3f} | {max(ratios):.3f} | "
               f"{'yes' if ok else '**no**'} |")
        if base:
            normalised = [(x / fa[base]) / (y / fb[base])
                          for x, y, fa, fb in zip(a, b, after, before) if y > 0 and fa[base] > 0]
            row += f" {statistics.median(normalised):.3f} |" if key != base else " — |"
        print(row)


if __name__ == "__main__":
    main()
