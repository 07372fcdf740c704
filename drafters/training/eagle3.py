"""Training EAGLE-3 heads: fused target features, a reduced draft vocabulary, training-time test.

    features   per token, the target's hidden states eagle3_layers(L) (low, mid, high; fused by
               the head's fc) and its final-norm output (the target's next-token distribution,
               through its LM head); extracted once into resumable shards (training.eagle)
    pairs      pair i = (g_i, t_{i+1}) predicts t_{i+2}; the target p = softmax(W_d z_{i+1}) with
               z the final-norm output and W_d the target head's rows of the draft vocabulary
    loss       EAGLE-3 (Li et al. 2025): no feature regression, cross-entropy only,
                   L = sum_k decay^(k-1) * CE(p_{i+1}, q^(k)_i)   over answer positions
    test       training-time test: step k > 1 feeds pair (h^(k-1)_{i-1}, t_{i+1}) at position i,
               h^(k-1) the head's own output at step k-1, and attends to the true pairs j <= i-k+1
               and to its own chain (step m at position i-(k-m), m = 2..k) through a KV cache of the
               earlier steps (ttt_mask): exactly what the k-th draft step of a chain sees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from drafters.eagle_head import EagleHead, eagle3_layers


def feature_layers(num_layers: int) -> list[int]:
    """Hidden states stored per token for EAGLE-3 training: low, mid, high, final-norm output."""
    return [*eagle3_layers(num_layers), num_layers]


def pack_documents(docs: Sequence[Sequence[int]], prompt_lens: Sequence[int], seq_len: int,
                   pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate documents (prompt + answer) and cut into rows of `seq_len` tokens.
    Returns (tokens, valid, answer) [N, seq_len]: `answer` marks the answer tokens, whose
    prediction is what the head is trained on (EAGLE-3's loss mask)."""
    flat, ans = [], []
    for doc, p in zip(docs, prompt_lens):
        flat.extend(doc)
        ans.extend([False] * p + [True] * (len(doc) - p))
    n = max(1, math.ceil(len(flat) / seq_len))
    tokens = torch.full((n * seq_len,), pad_id, dtype=torch.long)
    tokens[: len(flat)] = torch.tensor(flat, dtype=torch.long)
    valid = torch.zeros(n * seq_len, dtype=torch.bool)
    valid[: len(flat)] = True
    answer = torch.zeros(n * seq_len, dtype=torch.bool)
    answer[: len(ans)] = torch.tensor(ans, dtype=torch.bool)
    return tokens.view(n, seq_len), valid.view(n, seq_len), answer.view(n, seq_len)


def ttt_mask(n: int, step: int, device=None) -> torch.Tensor:
    """[n, step * n] (True = attend) for the queries of step `step` (1-based) over the keys of
    steps 1..step: block 1 (true pairs) j <= i - step + 1; block m >= 2, j = i - (step - m)."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    blocks = [j <= i - step + 1] + [j == i - (step - m) for m in range(2, step + 1)]
    return torch.cat(blocks, dim=1)


def init_from_target(head: EagleHead, target) -> EagleHead:
    """Start an EAGLE-3 head's own output (norm, LM head) from the target's final norm and its
    LM head's rows of the draft vocabulary: its logits begin as the target's would read h."""
    from specsel.modeling.compat import decoder_stack
    with torch.no_grad():
        head.lm_head.weight.copy_(target.get_output_embeddings().weight[head.draft_to_target].to(head.dtype))
        head.norm.weight.copy_(decoder_stack(target).norm.weight.to(head.dtype))
    return head


@dataclass(frozen=True)
class Eagle3LossOptions:
    """eagle3_loss() settings: training-time-test steps, per-step loss decay, fused-feature noise (x RMS)."""
    steps: int = 3
    decay: float = 0.8
    noise: float = 0.0


def eagle3_loss(head: EagleHead, target_rows: torch.Tensor, tokens: torch.Tensor, features: torch.Tensor,
                valid: torch.Tensor | None = None, answer: torch.Tensor | None = None,
                options: Eagle3LossOptions = Eagle3LossOptions(), generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict]:
    """EAGLE-3 loss with an `options.steps`-step training-time test on a batch of rows
    (step k weighted options.decay^(k-1); options.noise: U(-noise, noise) x RMS on the fused features).

    tokens [B, T]; features [B, T, 4H] (low, mid, high, final-norm output of each token);
    target_rows [Vd, H] the target head's rows of the draft vocabulary; valid, answer [B, T]
    (answer: positions whose prediction counts; None: all valid ones). Returns (loss, stats)
    with the top-1 agreement with the target's draft-vocabulary argmax per step (top1, top1_step2, ...)."""
    if head.version != 3:
        raise ValueError("eagle3_loss trains EAGLE-3 heads; EAGLE-1/2 heads train with training.eagle.eagle_loss")
    steps, decay, noise = options.steps, options.decay, options.noise
    H = head.hidden_size
    B, T = tokens.shape
    n = T - 2
    fused = features[:, :-2, : 3 * H].float()
    if noise:
        scale = fused.pow(2).mean().sqrt()
        fused = fused + (torch.rand(fused.shape, generator=generator) * 2 - 1) * noise * scale
    mask = torch.ones(B, n, dtype=torch.bool) if valid is None else valid[:, 2:].clone()
    if answer is not None:
        mask &= answer[:, 2:]
    b_idx, i_idx = mask.nonzero(as_tuple=True)                 # the positions that carry the loss
    with torch.no_grad():              # z_{i+1}: the target's view of t_{i+2}, only where it is needed
        final = features[:, 1:-1, 3 * H: 4 * H][b_idx, i_idx].float()
        p = torch.softmax(final @ target_rows.T.float(), dim=-1)
        want = p.argmax(-1)
    loss, stats = 0.0, {}
    for k, out in enumerate(ttt_forward(head, tokens[:, 1:-1], fused, steps, compute_logits=False), start=1):
        keep = i_idx >= k - 1                                    # a chain's step k starts at a true pair i-k+1 >= 0
        if not bool(keep.any()):
            continue
        logits = head.logits(out.hidden[b_idx[keep], i_idx[keep]])     # the LM head only where the loss is
        step_loss = soft_ce(p[keep], logits).mean()
        loss = loss + decay ** (k - 1) * step_loss
        with torch.no_grad():
            stats["top1" if k == 1 else f"top1_step{k}"] = float((logits.argmax(-1) == want[keep]).float().mean())
        stats["ce" if k == 1 else f"ce_step{k}"] = float(step_loss.detach())
    if not stats:
        loss = sum(w.sum() for w in head.parameters() if w.requires_grad) * 0.0     # nothing to learn here
    return loss, stats


def ttt_forward(head: EagleHead, x_tokens: torch.Tensor, fused: torch.Tensor, steps: int,
                compute_logits: bool = True):
    """Yield the head's output (hidden, logits) of each of `steps` training-time-test steps over
    pairs (fused_i, x_tokens_i); step k+1 at position i is fed step k's output at i-1."""
    from transformers import DynamicCache
    B, n = x_tokens.shape
    pos = torch.arange(n, device=x_tokens.device)[None].expand(B, -1)
    cache, feats = DynamicCache(), fused
    for k in range(1, steps + 1):
        out = head(input_ids=x_tokens, features=feats, attention_mask=ttt_mask(n, k, x_tokens.device)[None, None],
                   position_ids=pos, past_key_values=cache, use_cache=True, compute_logits=compute_logits)
        yield out
        feats = torch.cat([out.hidden.new_zeros(B, 1, out.hidden.shape[-1]), out.hidden[:, :-1]], dim=1)


@torch.no_grad()
def heldout_top1(head: EagleHead, target_rows: torch.Tensor, tokens, features, valid, answer, steps: int = 3,
                 batch_size: int = 4) -> dict:
    """Mean per-step top-1 agreement (answer positions) of the training-time test on rows the
    head did not train on: the acceptance each draft step can expect."""
    was = head.training
    head.eval()
    sums, n = {}, 0
    for b in range(0, len(tokens), batch_size):
        sl = slice(b, b + batch_size)
        _, stats = eagle3_loss(head, target_rows, tokens[sl], features[sl].float(), valid[sl], answer[sl],
                               Eagle3LossOptions(steps=steps))
        weight = float((valid[sl, 2:] & answer[sl, 2:]).sum())
        for key, v in stats.items():
            if key.startswith("top1"):
                sums[key] = sums.get(key, 0.0) + v * weight
        n += weight
    head.train(was)
    return {k: round(v / max(n, 1.0), 4) for k, v in sums.items()}


def restrict_vocabulary(head: EagleHead, keep: int, counts: torch.Tensor) -> EagleHead:
    """A copy of an EAGLE-3 head drafting over only its `keep` most frequent draft tokens
    (`counts`: target-vocabulary token counts): its own LM head's rows of those tokens and the
    matching d2t. Used to measure acceptance against draft cost (recipes/draft_vocab.py)."""
    import copy
    if head.version != 3:
        raise ValueError("restrict_vocabulary needs an EAGLE-3 head (its own LM head)")
    ids = head.draft_to_target
    chosen = counts[ids].topk(min(keep, len(ids))).indices.sort().values       # draft ids, ascending target ids
    small = copy.deepcopy(head)
    small.config.draft_vocab_size = len(chosen)
    small.lm_head = torch.nn.Linear(head.hidden_size, len(chosen), bias=False).to(head.dtype)
    with torch.no_grad():
        small.lm_head.weight.copy_(head.lm_head.weight[chosen])
    targets = ids[chosen]
    small.d2t = targets - torch.arange(len(chosen))
    small.draft_to_target = targets.clone()
    small._low_weight, small._low_key = None, None
    return small


def token_counts(docs: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for d in docs:
        counts += torch.bincount(torch.tensor(list(d), dtype=torch.long), minlength=vocab_size)
    return counts


def coverage(docs: Sequence[Sequence[int]], prompt_lens: Sequence[int], draft_tokens: torch.Tensor,
             vocab_size: int) -> float:
    """Share of answer tokens inside the draft vocabulary: a token outside it is never drafted,
    so this bounds every draft position's acceptance."""
    inside = torch.zeros(vocab_size, dtype=torch.bool)
    inside[draft_tokens] = True
    hit = total = 0
    for d, p in zip(docs, prompt_lens):
        a = torch.tensor(list(d[p:]), dtype=torch.long)
        hit += int(inside[a].sum())
        total += len(a)
    return hit / max(total, 1)


def soft_ce(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's logits against the target's distribution p, per position."""
    return -(p * F.log_softmax(logits.float(), dim=-1)).sum(-1)
