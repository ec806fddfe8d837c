"""How fast ``--help`` answers: wall time of ``deeplabv3plus [<command>] --help`` next to its peers.

Each row is a fresh ``python`` process, run ``--repeats`` times in turn with the others (so that a
busy moment of the machine hits every row alike); the table gives the median and the fastest run.
The peers bound what is possible: ``python -c pass`` (the interpreter alone) and
``python -c "import torch"`` (what every ``--help`` cost before the command line stopped importing
torch to build its parsers). The package is this checkout's (its folder first on ``PYTHONPATH``).

Example::

    python scripts/cli_startup.py                      # every command, 5 runs each
    python scripts/cli_startup.py --repeats 10 --markdown startup.md

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
sys.path.insert(0, str(REPO))

from deeplabv3plus.cli import COMMANDS  # noqa: E402  (this checkout's, not an installed copy)


def rows() -> list[tuple[str, list[str]]]:
    """(label, argv) of every timed process."""
    python = [sys.executable]
    out = [
        ("python -c pass", [*python, "-c", "pass"]),
        ('python -c "import torch"', [*python, "-c", "import torch"]),
        ("deeplabv3plus --help", [*python, "-m", "deeplabv3plus", "--help"]),
    ]
    out += [
        (f"deeplabv3plus {name} --help", [*python, "-m", "deeplabv3plus", name, "--help"])
        for name in COMMANDS
    ]
    return out


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one process (output discarded); raises if it fails."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (default: %(default)s)")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = parser.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    table = rows()
    times: dict[str, list[float]] = {label: [] for label, _ in table}
    for argv in (argv for label, argv in table):  # warm the file cache once, untimed
        wall_time(argv, env)
    for _ in range(args.repeats):
        for label, argv in table:
            times[label].append(wall_time(argv, env))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"{when}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load:.2f} at the end; Python {platform.python_version()}; {args.repeats} runs per row"
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
