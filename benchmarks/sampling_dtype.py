"""Sampling speed in fp32, bf16 weights and bf16 autocast, and how far bf16 moves a trained policy's distribution.

The quickstart samples ρ's comparisons from a bf16 copy of ρ and PPO's rollouts under bf16 autocast where the device
has bf16 units (`sampling_dtype="auto"`). This prints the seconds to sample the quickstart's shapes (16 queries ×
K samples × 24 tokens) each way, twice, and, given a trained policy folder, the per-token KL of that policy in bf16
from itself in fp32 next to its KL from ρ (over its own samples; bf16 should be a small fraction of it).

    python benchmarks/sampling_dtype.py --run-dir runs/quickstart            # queries and policy of a finished run
    python benchmarks/sampling_dtype.py --run-dir runs/quickstart --k 1      # PPO's rollout shape (one per query)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from ziegler_trl import load_policy, load_tokenizer, sample_completions, sampling_dtype
from ziegler_trl.ppo.core import position_ids_from_mask
from ziegler_trl.quickstart import QuickstartConfig
from ziegler_trl.quickstart.stages import as_queries
from ziegler_trl.quickstart.stages import task as quickstart_task
from ziegler_trl.sampling import pad_left


def timed_sampling(model, tokenizer, queries, task, k: int, autocast: bool) -> tuple[float, list[str]]:
    torch.manual_seed(0)
    start = time.perf_counter()
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with bf16:
        batch = sample_completions(model, tokenizer, queries, task, k=k, batch_size=len(queries), progress=False)
    return time.perf_counter() - start, [t for texts in batch.texts(tokenizer) for t in texts]


@torch.no_grad()
def log_probs(model, input_ids, attention_mask, temperature: float) -> torch.Tensor:
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids_from_mask(attention_mask)).logits.float()
    return (logits / temperature).log_softmax(-1)


def per_token_kl(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over real positions of KL(p‖q) between next-token distributions given as log-probs."""
    kl = (p.exp() * (p - q)).sum(-1)
    return ((kl * mask).sum() / mask.sum()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/quickstart", help="A finished quickstart folder.")
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--k", type=int, default=4, help="Samples per query (4: a comparison; 1: a PPO rollout).")
    args = parser.parse_args()
    run = Path(args.run_dir)
    print(f"device bf16 units: {sampling_dtype('cpu') == torch.bfloat16}; torch threads {torch.get_num_threads()}")
    tokenizer = load_tokenizer("embedded")
    task = quickstart_task(QuickstartConfig())
    texts = json.loads((run / "queries.json").read_text())["held_out"][: args.queries]
    queries = as_queries(texts, tokenizer)

    fp32 = load_policy("embedded", tokenizer).eval()
    bf16 = load_policy("embedded", tokenizer, dtype=torch.bfloat16).eval()
    print(f"\nsampling {len(queries)} queries × {args.k} × {task.response_length} tokens (seconds, two runs each)")
    reference = None
    for name, model, autocast in (("fp32", fp32, False), ("bf16 weights", bf16, False), ("bf16 autocast", fp32, True)):
        runs = [timed_sampling(model, tokenizer, queries, task, args.k, autocast) for _ in range(2)]
        reference = reference or runs[0][1]
        same = sum(a == b for a, b in zip(runs[0][1], reference)) / len(reference)
        print(f"  {name:14s} {runs[0][0]:6.2f} {runs[1][0]:6.2f}   samples equal to fp32's (same seed): {same:.0%}")

    if (run / "policy" / "config.json").is_file():
        pi = load_policy(str(run / "policy"), tokenizer).eval()
        pi_bf16 = load_policy(str(run / "policy"), tokenizer, dtype=torch.bfloat16).eval()
        torch.manual_seed(0)
        batch = sample_completions(pi, tokenizer, queries, task, k=1, batch_size=len(queries), progress=False)
        rows = [q.ids + [t for t in r.tolist() if t != tokenizer.pad_token_id] for q, r in zip(queries, batch.responses)]
        input_ids, attention_mask = pad_left(rows, tokenizer.pad_token_id)
        mask = attention_mask.float()
        lp = {name: log_probs(model, input_ids, attention_mask, task.temperature)
              for name, model in (("pi", pi), ("pi_bf16", pi_bf16), ("rho", fp32))}
        print(f"\nper-token KL over π's samples of {len(queries)} held-out queries (nats):")
        print(f"  KL(π‖ρ)        {per_token_kl(lp['pi'], lp['rho'], mask):.4f}   what PPO changed")
        print(f"  KL(π_bf16‖π)   {per_token_kl(lp['pi_bf16'], lp['pi'], mask):.4f}   what bf16 weights change")
        print(f"  KL(π_bf16‖ρ)   {per_token_kl(lp['pi_bf16'], lp['rho'], mask):.4f}")


if __name__ == "__main__":
    main()
