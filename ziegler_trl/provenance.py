"""Where a study's figures came from: the commit of the code that produced them and the command that ran it."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path


def git_commit() -> str:
    """The checkout's commit, marked when files differ from it; "unknown" outside a git checkout."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


INVOCATIONS = "invocations.json"


def record_invocation(root: Path, command: Sequence[str]) -> list[dict]:
    """Append this invocation of a study (the commit of the code it runs, read before any stage, its command and
    start time) to `root/invocations.json`, and return every invocation that built the folder so far."""
    from .checkpoints import write_text_atomically

    path = root / INVOCATIONS
    invocations = json.loads(path.read_text()) if path.is_file() else []
    invocations.append({"commit": git_commit(), "command": shlex.join(command),
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_text_atomically(path, json.dumps(invocations, indent=2))
    return invocations


def provenance_lines(invocations: Sequence[dict]) -> str:
    """Markdown bullets, one per distinct (commit, command) among `invocations`, in order: what a reader reruns."""
    pairs = list(dict.fromkeys((i["commit"], i["command"]) for i in invocations))
    return "\n".join(f"- Commit: `{commit}`; command: `{command}`" for commit, command in pairs)
