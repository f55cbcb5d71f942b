"""The whole quickstart under several seeds and settings at once, and a table of its targets for each.

One quickstart's effect varies a lot from seed to seed (on an H200, four seeds of the same settings gave π
preferred in 53-66 of 100), so a setting is judged on several runs. Each variant is `ziegler-trl quickstart` in
its own process and folder under --out (a finished one is reused), run side by side; on one GPU eight variants of
the default take about 3.5 minutes together. The table gives, per variant, what the quickstart's report checks.

    python benchmarks/quickstart_variants.py --out runs/variants --seeds 0 1 2 3
    python benchmarks/quickstart_variants.py --out runs/variants --seeds 0 1 \\
        --variant "head=--reward_trainable_top_layers 0 --reward_learning_rate 1e-2 --reward_num_train_epochs 4" \\
        --variant "n512=--num_comparisons 512"

--fp32 keeps a GPU in fp32 (the numerics of the CPU runs the quickstart's targets are set for; bf16 is otherwise
the default on GPUs that have it). --jobs caps how many run at once (default: all); on a CPU run them one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run in each child before the quickstart: hide bf16 support so every config's bf16 default is off.
FP32_CHILD = (
    "import sys, torch; torch.cuda.is_bf16_supported = lambda *a, **k: False; "
    "from ziegler_trl.cli import main; main(sys.argv[1:])"
)


def run_variant(name: str, args: list[str], out: Path, fp32: bool, timeout: float) -> tuple[str, int, float]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    entry = ["-c", FP32_CHILD] if fp32 else ["-m", "ziegler_trl.cli"]
    command = [sys.executable, *entry, "quickstart", "--output_dir", str(folder), *args]
    start = time.perf_counter()
    with open(folder / "variant.log", "w") as log:
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = -1
    return name, code, time.perf_counter() - start


def row(name: str, folder: Path, code: int, seconds: float) -> str:
    results = folder / "results.json"
    if not results.is_file():
        return f"| {name} | failed (exit {code}, see {folder / 'variant.log'}) | | | | | {seconds:.0f} |"
    r = json.loads(results.read_text())
    win, low, high, n = r["win_rate_pi_over_rho"]
    gain, half = r["score_gain"]
    kl = f"{r['final_kl']:.2f} / {r['kl_target']:g}"
    rm = f"{r['rm_accuracy']:.2f} (n = {r['rm_num_eval']})" if r.get("rm_accuracy") is not None else "-"
    stages = json.loads((folder / "stages.json").read_text()) if (folder / "stages.json").is_file() else {}
    return (f"| {name} | {win:.1%} ({low:.1%}-{high:.1%}, n = {n}) | {gain:+.3f} ± {half:.3f} | {kl} | {rm} | "
            f"{r['tie_fraction']:.0%} | {sum(stages.values()):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="One folder per variant is made under it.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Each variant runs once per seed.")
    parser.add_argument("--variant", action="append", metavar="NAME=OPTIONS", default=[],
                        help="A named set of quickstart options, quoted; default: one variant, the defaults.")
    parser.add_argument("--fp32", action="store_true", help="No bf16 on a GPU (the CPU's numerics).")
    parser.add_argument("--jobs", type=int, default=0, help="Variants at once (0: all).")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds per variant before it is stopped.")
    args = parser.parse_args()

    variants = [spec.partition("=")[::2] for spec in args.variant] or [("default", "")]
    if any(not name for name, _ in variants):
        parser.error(f"--variant takes NAME=OPTIONS, got {args.variant}")
    runs = {f"{name}_s{seed}": [*shlex.split(options), "--seed", str(seed)] for name, options in variants
            for seed in args.seeds}
    jobs = args.jobs or len(runs)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // min(jobs, len(runs)))))
    print(f"{len(runs)} quickstart runs, {jobs} at a time, under {args.out}", flush=True)
    with ThreadPoolExecutor(jobs) as pool:
        done = list(pool.map(lambda item: run_variant(*item, args.out, args.fp32, args.timeout), runs.items()))
    print("| variant | π preferred (Wilson 95%) | score gain π − ρ (95%) | final KL / target | reward model "
          "held-out acc. | ties | stage seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, code, seconds in done:
        print(row(name, args.out / name, code, seconds))
    if any(code != 0 for _, code, _ in done):
        sys.exit(1)


if __name__ == "__main__":
    main()
