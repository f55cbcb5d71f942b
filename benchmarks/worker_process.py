"""Benchmarks run each measured configuration in a fresh process (its peak memory is its own); the worker prints one
`RESULT {json}` line that the parent reads back."""

from __future__ import annotations

import json
import subprocess

RESULT_PREFIX = "RESULT "


def run_worker(cmd: list[str], env: dict[str, str], name: str) -> dict:
    """Run `cmd`, return the JSON of its last RESULT line; a failure raises with the worker's stderr tail."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # failures reported below
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])
