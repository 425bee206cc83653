"""Summarise a folded-stack profile (py-spy's `--format raw`): the functions with the largest share
of samples, inclusive (anywhere on the stack) and self (the frame that was running).

Frames are grouped by function and file, whatever the line; the `process ...` frames that
`--subprocesses` puts first are left out of the ranking but counted per process.

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


def _frame(raw: str) -> str:
    return _LINE.sub(")", raw.strip())


def summarise(text: str) -> Profile:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    processes: Counter[str] = Counter()
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
        if frames:
            own[frames[-1]] += count
    return Profile(samples, inclusive, own, processes)


def top_table(profile: Profile, top: int = 15) -> str:
    """The top entries by inclusive and by self share, as text."""
    lines = [f"{profile.samples} samples (on-CPU; idle threads are not sampled)"]
    for name, count in profile.processes.most_common():
        lines.append(f"  {100 * count / max(1, profile.samples):5.1f}%  {name}")
    for title, counter in (("inclusive", profile.inclusive), ("self", profile.own)):
        lines.append(f"top {top} by {title} share:")
        for name, count in counter.most_common(top):
            lines.append(f"  {100 * count / max(1, profile.samples):5.1f}%  {name}")
    return "\n".join(lines)


def top_entries(profile: Profile, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The same, as shares for a JSON report."""
    total = max(1, profile.samples)
    return {
        title: [(name, count / total) for name, count in counter.most_common(top)]
        for title, counter in (("inclusive", profile.inclusive), ("self", profile.own))
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    arguments = parser.parse_args()
    print(top_table(summarise(arguments.profile.read_text()), arguments.top))
