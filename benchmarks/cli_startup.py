"""Start-up time of `ziegler-trl` commands beside `python -c "import torch"` (the target: at most half of it).

    python benchmarks/cli_startup.py              # median of 5 fresh processes per command
    python benchmarks/cli_startup.py --runs 9 --all

Each command runs as the console script does (`from ziegler_trl.cli import main; main()`) in a fresh interpreter,
with the Python and environment of this process; the time is the wall clock from spawn to exit. `--all` adds the
help of every command, so the cost of the ones that need torch to list their options shows too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONSOLE_SCRIPT = "import sys; from ziegler_trl.cli import main; sys.argv[0] = 'ziegler-trl'; main()"
TARGET_RATIO = 0.5


def seconds(command: list[str], runs: int, cwd: str) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup_seconds(runs: int, every_command: bool = False) -> dict[str, float]:
    """Median wall time of each command over `runs` fresh processes (`every_command`: each command's --help too)."""
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "labels.sqlite")
        cli = [sys.executable, "-c", CONSOLE_SCRIPT]
        subprocess.run([*cli, "label", "add-labeler", "--store", store, "ann"], check=True, capture_output=True)
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "ziegler-trl --help": [*cli, "--help"],
            "ziegler-trl label status --store S": [*cli, "label", "status", "--store", store],
            "ziegler-trl eval summarization --help": [*cli, "eval", "summarization", "--help"],
        }
        if every_command:
            for name in ("collect", "quickstart", "sft", "train-reward", "train-policy"):
                commands[f"ziegler-trl {name} --help"] = [*cli, name, "--help"]
        return {name: seconds(command, runs, tmp) for name, command in commands.items()}


def print_startup(results: dict[str, float], runs: int) -> None:
    torch_s = results['python -c "import torch"']
    print(f"start-up, median of {runs} fresh processes ({sys.executable}, {os.cpu_count()} CPUs)")
    print(f"{'command':<42} {'seconds':>8} {'× import torch':>15}")
    for name, value in results.items():
        print(f"{name:<42} {value:>8.3f} {value / torch_s:>15.2f}")
    quick = [name for name in results if "label" in name or name == "ziegler-trl --help"]
    met = all(results[name] <= TARGET_RATIO * torch_s for name in quick)
    print(f"target ≤ {TARGET_RATIO}× import torch for --help and label commands: {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (the median is shown)")
    parser.add_argument("--all", action="store_true", help="also every command's --help")
    args = parser.parse_args()
    print_startup(startup_seconds(args.runs, args.all), args.runs)


if __name__ == "__main__":
    main()
