"""Draft verification: greedy and lossless speculative sampling (docs/design.md, "The round", step 3, eqs. 1-3).

Shapes: B rows, G = longest draft in the batch, V vocabulary. Target probabilities
`p[b, i]` are the next-token distribution after window position i, so draft token
drafts[b, i] is checked against p[b, i], and the bonus token comes from p[b, accepted].
"""
from __future__ import annotations

import torch


def _accepted_prefix(ok: torch.Tensor, draft_lens: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True in each row of ok [B, G], capped at draft_lens."""
    G = ok.shape[1]
    ok = ok & (torch.arange(G, device=ok.device)[None, :] < draft_lens[:, None])
    return ok.long().cumprod(dim=1).sum(dim=1)


def verify_greedy(target_logits: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor):
    """Accept the longest prefix with draft == argmax p, then add argmax p at the first mismatch.

    Returns (accepted [B], bonus [B]).
    """
    best = target_logits.argmax(dim=-1)                                   # [B, W]
    G = drafts.shape[1]
    accepted = _accepted_prefix(drafts == best[:, :G], draft_lens)
    bonus = best.gather(1, accepted[:, None]).squeeze(1)
    return accepted, bonus


def verify_sampling(p: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor,
                    q: torch.Tensor | None, generator: torch.Generator | None = None):
    """Speculative sampling (Leviathan et al. 2023, Alg. 1; Chen et al. 2023).

    p [B, W, V] warped target probabilities, q [B, G, V] the draft distributions the
    drafts were sampled from (None: every draft is deterministic, q is one-hot).
    Accept x with probability min(1, p(x)/q(x)); on rejection sample from
    normalize(max(0, p - q)); if every draft is accepted, sample the bonus from p.
    Returns (accepted [B], bonus [B]).
    """
    B, G = drafts.shape
    if G == 0:
        return torch.zeros(B, dtype=torch.long, device=p.device), _sample(p[:, 0], generator)
    if q is None:
        q = torch.zeros(B, G, p.shape[-1], dtype=p.dtype, device=p.device)
        q.scatter_(2, drafts[:, :, None], 1.0)
    p_draft = p[:, :G].gather(2, drafts[:, :, None]).squeeze(2)
    q_draft = q.gather(2, drafts[:, :, None]).squeeze(2)
    u = torch.rand(B, G, generator=generator, device=p.device)
    accepted = _accepted_prefix(u * q_draft <= p_draft, draft_lens)       # u < p/q, division-free
    rows = torch.arange(B, device=p.device)
    p_at = p[rows, accepted]                                               # [B, V]
    rejected = accepted < draft_lens
    q_at = torch.zeros_like(p_at)
    q_at[rejected] = q[rows[rejected], accepted[rejected]].to(p_at.dtype)
    return accepted, _sample(residual_distribution(p_at, q_at), generator)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalize(max(0, p - q)): what to sample after a rejection (q = 0 where nothing was rejected)."""
    residual = (p - q).clamp_min(0)
    mass = residual.sum(-1, keepdim=True)
    # p == q at a rejected position has probability 0; fall back to p rather than divide by 0
    return torch.where(mass > 0, residual / mass.clamp_min(1e-30), p)


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.multinomial(probs.float(), 1, generator=generator).squeeze(1)
