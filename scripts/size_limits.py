#!/usr/bin/env python3
"""Checks the size limits of production code: no file over FILE_LINES_MAX lines and no
function over FN_LINES_MAX lines, except those listed in scripts/size-exemptions.txt, each
with its reason. Test code (tests/ folders, files named tests.rs or *_tests.rs, and
`#[cfg(test)] mod` blocks) is not production code. Exits 1 naming every offender, and also
when an exemption is no longer needed (so the list only shrinks)."""

import pathlib
import re
import sys

FILE_LINES_MAX = 800
FN_LINES_MAX = 80
ROOT = pathlib.Path(__file__).resolve().parent.parent
# benches/ is measuring tooling, not shipped or simulated code.
CRATES = ["core", "broker", "coordinator", "worker", "client", "api", "simulation"]
FN_START = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
STRING = re.compile(r'"(\\.|[^"\\])*"')
CHAR = re.compile(r"'(\\.|[^'\\])'")


def is_test_file(path: pathlib.Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return "tests" in parts or path.name == "tests.rs" or path.name.endswith("_tests.rs")


def strip_literals(line: str) -> str:
    """The line's code without string and char literals and without its comment."""
    return CHAR.sub("' '", STRING.sub('""', line)).split("//")[0]


def production_lines(text: str) -> list[str]:
    """The file's lines, with `#[cfg(test)] mod` blocks blanked out."""
    out, depth, skipping, pending = [], 0, False, False
    for line in text.split("\n"):
        if skipping:
            code = strip_literals(line)
            depth += code.count("{") - code.count("}")
            out.append("")
            if depth <= 0:
                skipping = False
            continue
        if line.strip() == "#[cfg(test)]":
            pending = True
            out.append("")
            continue
        if pending and re.match(r"^\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", line):
            code = strip_literals(line)
            depth = code.count("{") - code.count("}")
            skipping = depth > 0
            pending = False
            out.append("")
            continue
        pending = False
        out.append(line)
    return out


def long_functions(lines: list[str]):
    """(name, first line number, length) of every function longer than FN_LINES_MAX."""
    found = []
    for i, line in enumerate(lines):
        m = FN_START.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            code = strip_literals(lines[j])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                length = j - i + 1
                if length > FN_LINES_MAX:
                    found.append((m.group(6), i + 1, length))
                break
    return found


def load_exemptions():
    exemptions = {}
    path = ROOT / "scripts" / "size-exemptions.txt"
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, reason = line.partition(" ")
        if not reason.strip():
            sys.exit(f"size-exemptions.txt: {key} has no reason")
        exemptions[key] = reason.strip()
    return exemptions


def main() -> int:
    exemptions = load_exemptions()
    used, offenders = set(), []
    for crate in CRATES:
        for path in sorted((ROOT / crate).rglob("*.rs")):
            if "target" in path.parts or is_test_file(path):
                continue
            rel = str(path.relative_to(ROOT))
            lines = production_lines(path.read_text())
            count = len([l for l in lines if l.strip()])
            if count > FILE_LINES_MAX:
                if rel in exemptions:
                    used.add(rel)
                else:
                    offenders.append(f"{rel}: {count} non-blank production lines (max {FILE_LINES_MAX})")
            for name, at, length in long_functions(lines):
                key = f"{rel}:{name}"
                if key in exemptions:
                    used.add(key)
                else:
                    offenders.append(f"{rel}:{at}: fn {name} is {length} lines (max {FN_LINES_MAX})")
    for key in sorted(set(exemptions) - used):
        offenders.append(f"size-exemptions.txt: {key} is within the limits now; remove it")
    for o in offenders:
        print(o)
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
