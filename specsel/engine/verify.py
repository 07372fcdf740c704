"""Draft verification: greedy and lossless speculative sampling (docs/design.md, "The round", step 3, eqs. 1-3).

Shapes: B rows, G = longest draft in the batch, V vocabulary. Target probabilities
`p[b, i]` are the next-token distribution after window position i, so draft token
drafts[b, i] is checked against p[b, i], and the bonus token comes from p[b, accepted].
"""
from __future__ import annotations

import torch

from specsel.core.sampling import RequestSampling
from specsel.core.seeds import position_seed


def _accepted_prefix(ok: torch.Tensor, draft_lens: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True in each row of ok [B, G], capped at draft_lens."""
    G = ok.shape[1]
    ok = ok & (torch.arange(G, device=ok.device)[None, :] < draft_lens[:, None])
    return ok.long().cumprod(dim=1).sum(dim=1)


def verify_greedy(target_logits: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor):
    """Accept the longest prefix with draft == argmax p, then add argmax p at the first mismatch.

    Returns (accepted [B], bonus [B]).
    """
    return _match(target_logits.argmax(dim=-1), drafts, draft_lens)


def verify_sampling(p: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor,
                    q_flat: torch.Tensor | None = None, q_index: torch.Tensor | None = None,
                    generator: torch.Generator | None = None):
    """Speculative sampling (Leviathan et al. 2023, Alg. 1; Chen et al. 2023).

    p [B, W, V] warped target probabilities. The draft distributions are stored flat and ragged:
    q_flat [T, V] holds one row per real draft position of the drafts that were sampled, and
    q_index [B, G] says which (-1: a deterministic draft, whose q is 1 at its token; None: every
    draft is deterministic). No [B, G, V] tensor is built for deterministic drafts.
    Accept x with probability min(1, p(x)/q(x)); on rejection sample from
    normalize(max(0, p - q)) (for a deterministic draft: p without the rejected token); if every
    draft is accepted, sample the bonus from p.
    Returns (accepted [B], bonus [B]).
    """
    B, G = drafts.shape
    if G == 0:
        return torch.zeros(B, dtype=torch.long, device=p.device), _sample(p[:, 0], generator)
    p_draft = p[:, :G].gather(2, drafts[:, :, None]).squeeze(2)
    q_draft = torch.ones_like(p_draft)                                     # deterministic: q(x) = 1
    if q_flat is not None:
        sampled = q_index >= 0
        q_draft[sampled] = q_flat[q_index[sampled], drafts[sampled]].to(p_draft.dtype)
    u = torch.rand(B, G, generator=generator, device=p.device)
    accepted = _accepted_prefix(u * q_draft <= p_draft, draft_lens)       # u < p/q, division-free
    rows = torch.arange(B, device=p.device)
    p_at = p[rows, accepted]                                               # [B, V]
    rejected = accepted < draft_lens
    at = accepted.clamp_max(G - 1)
    where = q_index[rows, at] if q_index is not None else torch.full_like(accepted, -1)
    with_q, without_q = rejected & (where >= 0), rejected & (where < 0)
    residual = residual_distribution(p_at, q=torch.zeros_like(p_at[:1]))     # every draft accepted: p
    if with_q.any():
        residual[with_q] = residual_distribution(p_at[with_q], q=q_flat[where[with_q]].to(p_at.dtype))
    if without_q.any():
        residual[without_q] = residual_distribution(p_at[without_q], token=drafts[without_q, at[without_q]])
    return accepted, _sample(residual, generator)


def verify_per_request(logits: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor,
                       decodings: list[RequestSampling], generated: list[int], q_flat=None, q_index=None,
                       generator: torch.Generator | None = None):
    """Verification of a batch whose rows decode differently (RequestSampling per row).

    Each row's target distribution p is its own: its Sampling's warps, or one-hot at the argmax for
    a greedy row. A greedy row and a seeded row know the token the target picks at each window
    position before looking at the draft (the argmax; seeded_choice), so they accept the drafts
    that match it and commit it at the first mismatch: a greedy row equals greedy decoding, a
    seeded row equals its own autoregressive sampling with the same seed. The other rows take
    speculative sampling (verify_sampling) against their own p. Every rule is lossless for any
    draft distribution q, so the drafts may come from the engine's sampling, not the row's.
    `generated[b]`: tokens row b had generated before this round (the noise of a seeded row is
    keyed on the generated token's index). Returns (accepted [B], bonus [B], p [B, W, V]).
    """
    B, W, V = logits.shape
    p = torch.empty(B, W, V, dtype=torch.float32, device=logits.device)
    by_setting: dict = {}
    for b, d in enumerate(decodings):
        by_setting.setdefault(d.sampling, []).append(b)
    for sampling, rows in by_setting.items():
        idx = torch.tensor(rows, device=logits.device)
        if sampling is None:
            p[idx] = torch.nn.functional.one_hot(logits[idx].argmax(-1), V).float()
        else:
            p[idx] = sampling.probs(logits[idx])
    known = [b for b, d in enumerate(decodings) if d.greedy or d.seeded]
    accepted = torch.zeros(B, dtype=torch.long, device=logits.device)
    bonus = torch.zeros(B, dtype=torch.long, device=logits.device)
    if known:
        idx = torch.tensor(known, device=logits.device)
        picks = torch.stack([seeded_choice(p[b], decodings[b].seed, generated[b]) if decodings[b].seeded
                             else p[b].argmax(-1) for b in known])                     # [k, W]
        accepted[idx], bonus[idx] = _match(picks, drafts[idx], draft_lens[idx])
    rest = [b for b, d in enumerate(decodings) if not (d.greedy or d.seeded)]
    if rest:
        idx = torch.tensor(rest, device=logits.device)
        accepted[idx], bonus[idx] = verify_sampling(p[idx], drafts[idx], draft_lens[idx], q_flat,
                                                    None if q_index is None else q_index[idx], generator)
    return accepted, bonus, p


def _match(picks: torch.Tensor, drafts: torch.Tensor, draft_lens: torch.Tensor):
    """Accept the drafts equal to the known picks [B, W]; the pick at the first mismatch is the bonus."""
    accepted = _accepted_prefix(drafts == picks[:, :drafts.shape[1]], draft_lens)
    return accepted, picks.gather(1, accepted[:, None]).squeeze(1)


def seeded_choice(p: torch.Tensor, seed: int, generated: int) -> torch.Tensor:
    """The token a request sampled with its own seed takes at each window position, p [W, V].

    The exponential race (the Gumbel-max trick): with E_x ~ Exp(1) independent, argmax_x p(x) / E_x
    is distributed as p. The noise E of the k-th generated token is drawn from a generator seeded by
    (seed, k) alone (specsel.core.seeds.position_seed), independent of every earlier token, so
    each token is an exact sample from p given the ones before it, and the sequence is the one
    autoregressive sampling with these noises gives: whatever the drafts were, whatever ran beside.
    """
    W, V = p.shape
    picks = torch.empty(W, dtype=torch.long, device=p.device)
    for c in range(W):
        g = torch.Generator(device=p.device).manual_seed(position_seed(seed, generated + c))
        noise = torch.empty(V, dtype=torch.float32, device=p.device).exponential_(generator=g)
        picks[c] = (p[c] / noise).argmax()
    return picks


def residual_distribution(p: torch.Tensor, q: torch.Tensor | None = None, token: torch.Tensor | None = None):
    """normalize(max(0, p - q)): what to sample after a rejection (eq. 3). For a deterministic
    draft q is one-hot at its rejected `token`, so the residual is p with that token removed."""
    if q is not None:
        residual = (p - q).clamp_min(0)
    else:
        residual = p.scatter(-1, token[:, None], 0.0)
    mass = residual.sum(-1, keepdim=True)
    # p == q at a rejected position has probability 0; fall back to p rather than divide by 0
    return torch.where(mass > 0, residual / mass.clamp_min(1e-30), p)


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.multinomial(probs.float(), 1, generator=generator).squeeze(1)


def flat_distributions(sampled, lengths: torch.Tensor, n: int, G: int):
    """The distributions of the sampled drafts at their real positions, flat ([T, V]), and for each
    (row, position) its row there ([n, G], -1 where the draft was deterministic or is padding)."""
    pos = torch.arange(G, device=lengths.device)
    q_index = torch.full((n, G), -1, dtype=torch.long, device=lengths.device)
    parts, offset = [], 0
    for rows, prop in sampled:
        g = min(prop.probs.shape[1], G)
        real = pos[None, :g] < lengths[rows][:, None]                  # [r, g]
        flat = prop.probs[:, :g][real].float()                         # [t, V], row-major: rows, then positions
        q_index[rows[:, None].expand(-1, g)[real], pos[None, :g].expand(len(rows), -1)[real]] = \
            offset + torch.arange(len(flat), device=lengths.device)
        parts.append(flat)
        offset += len(flat)
    return torch.cat(parts), q_index
