"""Summarise a folded-stack profile (py-spy's `--format raw`): the functions with the largest share
of samples, inclusive (anywhere on the stack) and self (the frame that was running).

Frames are grouped by function and file, whatever the line; the `process ...` frames that
`--subprocesses` puts first are left out of the ranking but counted per process. The inclusive
ranking leaves out pass-through frames (always calling the one same function, never running
themselves: runpy, asyncio.run, main ...), which would only repeat their callee's share.

    .venv/bin/python -m benchmarks.folded PROFILE.folded [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    inclusive: Counter[str]
    own: Counter[str]  # self: the innermost frame
    processes: Counter[str]
    pass_through: frozenset[str]  # frames with one callee that never ran themselves


def _frame(raw: str) -> str:
    return _LINE.sub(")", raw.strip())


def summarise(text: str) -> Profile:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    callees: dict[str, set[str | None]] = {}
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(frame) for frame in stack.split(";")]
        if frames and frames[0].startswith("process "):
            processes[frames.pop(0)] += count
        for frame in set(frames):  # recursion counts a sample once
            inclusive[frame] += count
        if not frames:
            continue
        own[frames[-1]] += count
        for caller, callee in zip(frames, [*frames[1:], None], strict=True):
            callees.setdefault(caller, set()).add(callee)
    pass_through = frozenset(
        frame for frame, called in callees.items() if len(called) == 1 and None not in called
    )
    return Profile(samples, inclusive, own, processes, pass_through)


def _ranked(profile: Profile, title: str, top: int) -> list[tuple[str, int]]:
    if title == "self":
        return profile.own.most_common(top)
    ranked = (item for item in profile.inclusive.most_common() if item[0] not in profile.pass_through)
    return [item for _, item in zip(range(top), ranked, strict=False)]


def top_table(profile: Profile, top: int = 15) -> str:
    """The top entries by inclusive and by self share, as text."""
    lines = [f"{profile.samples} samples (on-CPU; idle threads are not sampled)"]
    for name, count in profile.processes.most_common():
        lines.append(f"  {100 * count / max(1, profile.samples):5.1f}%  {name}")
    for title in ("inclusive", "self"):
        lines.append(f"top {top} by {title} share:")
        for name, count in _ranked(profile, title, top):
            lines.append(f"  {100 * count / max(1, profile.samples):5.1f}%  {name}")
    return "\n".join(lines)


def top_entries(profile: Profile, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The same, as shares for a JSON report."""
    total = max(1, profile.samples)
    return {
        title: [(name, count / total) for name, count in _ranked(profile, title, top)]
        for title in ("inclusive", "self")
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    arguments = parser.parse_args()
    print(top_table(summarise(arguments.profile.read_text()), arguments.top))
