"""How fast ``--help`` answers: wall time of ``deeplabv3plus [<command>] --help`` next to its peers.

Each row is a fresh ``python`` process, run ``--repeats`` times in turn with the others (so that a
busy moment of the machine hits every row alike), after one untimed round; the table gives the
median and the fastest run. The peers bound what is possible: ``python -c pass`` (the interpreter
alone) and ``python -c "import torch"`` (what every ``--help`` cost while the command line imported
torch to build its parsers). The package is this checkout's, or ``--repo``'s (that folder first on
``PYTHONPATH``).

Example::

    python scripts/cli_startup.py                      # every command, 5 runs each
    python scripts/cli_startup.py --repeats 10 --markdown startup.md
    python scripts/cli_startup.py --repo ../old-checkout --commands train eval   # another version

The results of a run are recorded in docs/benchmarks.md ("CLI start-up").
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rows(commands: list[str]) -> list[tuple[str, list[str]]]:
    """(label, argv) of every timed process: the peers, the main help, each command's help."""
    python = [sys.executable]
    out = [
        ("python -c pass", [*python, "-c", "pass"]),
        ('python -c "import torch"', [*python, "-c", "import torch"]),
        ("deeplabv3plus --help", [*python, "-m", "deeplabv3plus", "--help"]),
    ]
    out += [(f"deeplabv3plus {c} --help", [*python, "-m", "deeplabv3plus", c, "--help"]) for c in commands]
    return out


def wall_time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from start to exit of one process (output discarded); raises if it fails."""
    start = time.perf_counter()
    # cwd: ``python -m`` puts the current folder first on sys.path, before PYTHONPATH
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (default: %(default)s)")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to time (default: this one)")
    parser.add_argument("--commands", nargs="+", help="the commands whose --help to time (default: all)")
    args = parser.parse_args()
    repo = args.repo.expanduser().resolve()
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    commands = args.commands
    if commands is None:  # the checkout's own list, asked of its cli (untimed: it may import torch)
        ask = "from deeplabv3plus.cli import COMMANDS; print(' '.join(COMMANDS))"
        listed = subprocess.run(
            [sys.executable, "-c", ask], env=env, cwd=repo, check=True, capture_output=True, text=True
        )
        commands = listed.stdout.split()
    table = rows(commands)
    times: dict[str, list[float]] = {label: [] for label, _ in table}
    for _, argv in table:  # warm the file cache, untimed
        wall_time(argv, env, repo)
    for _ in range(args.repeats):
        for label, argv in table:
            times[label].append(wall_time(argv, env, repo))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    header = (
        f"{when}; {repo.name} at {commit.stdout.strip() or '?'}; {platform.machine()}, {os.cpu_count()} "
        f"CPUs, load average {load:.2f} at the end; Python {platform.python_version()}; "
        f"{args.repeats} runs per row"
    )
    width = max(len(label) for label in times)
    lines = [header, "", f"| {'process':<{width}} | median s | fastest s |", f"|{'-' * (width + 2)}|---|---|"]
    lines += [
        f"| {label:<{width}} | {statistics.median(t):.2f} | {min(t):.2f} |" for label, t in times.items()
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
        print(f"wrote {Path(args.markdown).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
