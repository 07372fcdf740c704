"""The training loop every drafter recipe shares: AdamW with warm-up and cosine decay over random
rows, checkpointed every `save_every` steps, so a killed run resumes where it stopped (a
checkpoint of other settings or data is refused by its fingerprint)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from drafters.training.checkpoint import load_checkpoint, plain


@dataclass(frozen=True)
class TrainOptions:
    """train() hyper-parameters, checkpoint cadence and the `fingerprint` of the run's settings and data."""
    steps: int
    batch_size: int
    lr: float
    save_every: int = 50
    seed: int = 0
    progress: bool = True
    weight_decay: float = 0.0
    warmup: int = 20
    fingerprint: dict | None = None


def train(module: torch.nn.Module, loss_fn, n_rows: int, options: TrainOptions, checkpoint_dir: str | Path) -> dict:
    """AdamW with linear warmup and cosine decay over `steps` batches of `batch_size` rows (`options`).

    loss_fn(row_indices, generator) -> (loss, stats). Every `save_every` steps the trainable
    parameters and optimizer state go to checkpoint_dir/checkpoint.pt (atomically); a
    rerun resumes from there, but only if it was written with the same `fingerprint` (the
    settings and data that define the run) and the same hyper-parameters. Returns a summary
    (steps, seconds, last stats)."""
    steps, batch_size, lr, save_every, seed = (options.steps, options.batch_size, options.lr, options.save_every,
                                               options.seed)
    progress, weight_decay, warmup, fingerprint = (options.progress, options.weight_decay, options.warmup,
                                                   options.fingerprint)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_dir / "checkpoint.pt"
    params = [p for p in module.parameters() if p.requires_grad]
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    start, seconds, history = 0, 0.0, []
    identity = plain({"n_rows": n_rows, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                       **(fingerprint or {})})
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["names"] != names or plain(state.get("identity")) != identity:
            raise ValueError(f"{ckpt} was written by a run with other settings or data: delete it to start over")
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, seconds, history = state["step"], state["seconds"], state["history"]
    module.train()
    bar = tqdm(total=steps, initial=start, desc="train", unit="step", disable=not progress)
    stats = {}
    for step in range(start, steps):
        t0 = time.perf_counter()
        # the batch of this step depends only on the step index: resuming replays the same data
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        rows = torch.randint(0, n_rows, (batch_size,), generator=g) if n_rows < batch_size else \
            torch.randperm(n_rows, generator=g)[:batch_size]
        loss, stats = loss_fn(rows, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        seconds += time.perf_counter() - t0
        history.append(plain({"step": step + 1, "loss": float(loss.detach()), **stats}))
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", top1=f"{stats.get('top1', 0):.3f}")
        bar.update(1)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            tmp = ckpt.with_suffix(".tmp")
            # tensors and plain types only: the checkpoint loads with weights_only=True (drafters.training.checkpoint)
            torch.save({"names": names, "identity": identity, "params": [p.detach().clone() for p in params],
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "step": step + 1,
                        "seconds": seconds, "history": history}, tmp)
            os.replace(tmp, ckpt)
    bar.close()
    module.eval()
    return {"steps": steps, "seconds": round(seconds, 1), "last": history[-1] if history else {},
            "history": history}
