"""The batched speculative decoding engine: one target forward per round (DESIGN "The round").

    for every round, with A active rows:
        1. policy.select(rows)           -> an arm (drafter, gamma) per row
        2. each drafter proposes         for the rows that play it
        3. ONE target forward            over [last committed token, drafts...] of every row
        4. verify                        greedy or speculative sampling, per row
        5. commit m_r = accepted + 1     cut at EOS and max_new_tokens; KV caches roll back per row
        6. drafters catch up             (all of them in full-information mode) -> per-position acceptance
        7. policy.observe(round)         learners update; records are kept for evaluators

Autoregressive decoding is the arm with no drafter: the same loop with an empty draft.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Collection, Sequence

import torch
from tqdm.auto import tqdm

from drafters.base import DraftContext, Drafter, DrafterError, Predictions
from specsel.arms import Arm, validate_arms
from specsel.kvcache import RaggedKVCache
from specsel.verify import Sampling, verify_greedy, verify_sampling


@dataclass
class RoundRecord:
    """What one row did in one round (enough for MAT, acceptance per position, tokens/s)."""
    row: int            # prompt index in the batch given to generate()
    round: int          # this row's round number, from 0
    drafter: str | None
    gamma: int          # gamma of the arm played
    drafted: int        # draft tokens actually verified (<= gamma: budget cap, n-gram misses)
    accepted: int       # draft tokens the verifier accepted (a final EOS/budget cut may commit fewer)
    committed: int      # tokens committed this round (accepted + bonus, cut at EOS/max_new_tokens)
    draft_s: float      # wall time of this row's drafter proposal (shared by its group)
    verify_s: float     # wall time of the round's target forward + verification (shared by all rows)
    batch: int          # rows in the round
    position_acceptance: dict[str, list[float]] | None = None  # drafter -> acceptance at each committed position


@dataclass
class RoundInfo:
    """Everything a policy may learn from after a round (local order = `rows`)."""
    rows: list[int]
    arms: list[Arm]
    records: list[RoundRecord]


@dataclass
class _PendingRound:
    """A round awaiting deferred scores: what the policy will observe, and where it committed."""
    info: RoundInfo
    prev_lens: torch.Tensor     # [n] committed length before the round
    m: torch.Tensor             # [n] tokens committed in the round


class ArmPolicy:
    """Chooses an arm per active row every round; learns from what happened."""
    needs_full_information = False   # True: only works with generate(feedback="full")

    def start(self, n_rows: int) -> None:
        """A generate() call with `n_rows` new prompts begins (rows are 0..n_rows-1)."""

    def select(self, rows: list[int]) -> list[Arm]:
        raise NotImplementedError

    def observe(self, info: RoundInfo) -> None:
        pass

    def scored_drafters(self) -> Collection[str] | None:
        """Full information: the drafters whose acceptance the policy wants for the coming rounds
        (up to the next feedback); None = every drafter. Those left out are not scored, and
        their acceptance is missing from the records (called before each scoring window)."""
        return None

    def finish(self, row: int) -> None:
        """Prompt `row` is done (EOS or max_new_tokens)."""


class FixedArms(ArmPolicy):
    """Row i always plays arms[i] (one arm for every row if a single Arm is given)."""
    def __init__(self, arms: Arm | Sequence[Arm], n_rows: int):
        arms = [arms] * n_rows if isinstance(arms, Arm) else list(arms)
        if len(arms) != n_rows:
            raise ValueError(f"got {len(arms)} arms for {n_rows} prompts; pass one Arm or one per prompt")
        self.arms = arms

    def select(self, rows: list[int]) -> list[Arm]:
        return [self.arms[r] for r in rows]


@dataclass
class GenerationResult:
    tokens: list[list[int]]                 # generated tokens per prompt (EOS included if hit)
    records: list[RoundRecord]
    wall_s: float                           # prefill + decoding
    prefill_s: float
    stopped_by_eos: list[bool] = field(default_factory=list)

    @property
    def new_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class SpecEngine:
    """Batched, lossless speculative decoding of `target` with a pool of named drafters."""

    def __init__(self, target, drafters: dict[str, Drafter] | Sequence[Drafter] | None = None,
                 eos_token_id: int | Sequence[int] | None = None):
        self.target = target.eval()
        if drafters is None:
            drafters = {}
        elif not isinstance(drafters, dict):
            drafters = {d.name: d for d in drafters}
        for name, d in drafters.items():
            d.name = name
            d.check_target(target)
        self.drafters: dict[str, Drafter] = drafters
        eos = target.generation_config.eos_token_id if eos_token_id is None else eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.device = target.device
        self.eos = torch.tensor(eos, dtype=torch.long, device=self.device)
        self.context = getattr(target.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------ checks
    def _check(self, prompts, max_new_tokens: int) -> None:
        if not prompts:
            raise ValueError("no prompts given")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
        vocab = self.target.config.vocab_size
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty: every prompt needs at least one token "
                                 "(apply the chat template, or start with the BOS token)")
            if min(p) < 0 or max(p) >= vocab:
                raise ValueError(f"prompt {i} has token ids outside [0, {vocab}): was it encoded with the target's tokenizer?")
            if self.context and len(p) + max_new_tokens > self.context:
                raise ValueError(f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                                 f"target's context of {self.context}: shorten the prompt or lower max_new_tokens")

    # ------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], arms: Arm | Sequence[Arm] | ArmPolicy,
                 max_new_tokens: int = 64, sampling: Sampling | None = None, seed: int = 0,
                 feedback: str = "bandit", progress: bool = False, score_every: int = 1) -> GenerationResult:
        """Generate for every prompt (lists of token ids).

        arms: one Arm for all rows, one per row, or an ArmPolicy choosing every round.
        sampling: None for greedy, else Sampling(temperature, top_p).
        feedback: "bandit" (only the played drafter runs) or "full" (every drafter catches up
        each round and reports its acceptance at every committed position).
        score_every: greedy full information only: drafters with `deferred_scoring` (EAGLE
        heads) score the committed positions of up to this many rounds in one forward, and
        the policy learns of those rounds then (delayed feedback, as a learner gets anyway).
        Fewer, wider drafter forwards; the output is the same.
        """
        if not isinstance(score_every, int) or score_every < 1:
            raise ValueError(f"score_every must be an integer >= 1 (got {score_every!r})")
        if feedback not in ("bandit", "full"):
            raise ValueError(f"feedback must be 'bandit' or 'full' (got {feedback!r})")
        prompts = [list(p) for p in prompts]
        self._check(prompts, max_new_tokens)
        policy = arms if isinstance(arms, ArmPolicy) else FixedArms(arms, len(prompts))
        if getattr(policy, "arms", None) is not None:
            validate_arms(policy.arms, self.drafters)
        if policy.needs_full_information and feedback != "full":
            raise ValueError(f"{type(policy).__name__} learns from every drafter's counterfactual acceptance: "
                             "pass feedback='full'")
        dev, B = self.device, len(prompts)
        policy.start(B)
        generator = torch.Generator(device=dev).manual_seed(seed)

        lens = torch.tensor([len(p) for p in prompts], device=dev)
        seqs = torch.zeros(B, int(lens.max()) + max_new_tokens, dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):
            seqs[i, : len(p)] = torch.tensor(p, device=dev)
        ctx = DraftContext(seqs, lens.clone(), lens.clone(), sampling, generator,
                           scored=None if feedback == "full" else frozenset())
        deferred = [name for name, d in self.drafters.items() if d.deferred_scoring] \
            if feedback == "full" and sampling is None and score_every > 1 else []
        pending: list[_PendingRound] = []       # rounds whose deferred scores are not in yet

        # target features drafters draft from (always) or score committed positions from (full information)
        draft_layers = sorted({k for d in self.drafters.values() for k in d.feature_layers})
        layers = sorted({*draft_layers, *(k for d in self.drafters.values()
                                          for k in (d.scoring_layers if feedback == "full" else ()))})
        t_start = _clock(dev)
        kv = RaggedKVCache(self.target, B)
        widths = lens - 1              # the cache holds every committed token but the last
        if int(widths.max()) > 0:
            out = kv.forward(seqs[:, : int(widths.max())], widths, logits=False, capture=draft_layers)
            ctx.target_hidden = out.captured or None      # prompt features f_0..f_{P-2}
            kv.keep(widths)
        prefill_s = _clock(dev) - t_start
        for d in self.drafters.values():
            d.start(ctx)
        ctx.target_hidden = None

        row_ids = torch.arange(B, device=dev)     # global prompt index of each local row
        n_rounds = torch.zeros(B, dtype=torch.long, device=dev)
        outputs: list[list[int] | None] = [None] * B
        by_eos = [False] * B
        records: list[RoundRecord] = []
        bar = tqdm(total=B * max_new_tokens, desc="generate", unit="tok", disable=not progress, leave=False)
        while len(row_ids):
            n = len(row_ids)
            arms_now = policy.select(row_ids.tolist())
            if len(arms_now) != n:
                raise RuntimeError(f"policy returned {len(arms_now)} arms for {n} rows")
            generated = ctx.seq_lens - lens[row_ids]
            remaining = max_new_tokens - generated
            # drafting past the budget is waste: at most remaining - 1 drafts (+ 1 bonus)
            gammas = torch.minimum(torch.tensor([a.gamma for a in arms_now], device=dev), remaining - 1)

            if feedback == "full" and not pending:    # a scoring window starts: whose acceptance is wanted
                wanted = policy.scored_drafters()
                ctx.scored = frozenset(self.drafters if wanted is None else wanted)
                ctx.score_from = ctx.seq_lens.clone()     # earlier positions are scored already

            # 2. draft, grouped by drafter
            groups: dict[str, torch.Tensor] = {}
            for i, arm in enumerate(arms_now):
                if arm.drafter is not None and gammas[i] > 0:
                    groups.setdefault(arm.drafter, []).append(i)
            groups = {name: torch.tensor(rows, device=dev) for name, rows in groups.items()}
            G = int(gammas.max()) if groups else 0
            draft = torch.zeros(n, G, dtype=torch.long, device=dev)
            draft_lens = torch.zeros(n, dtype=torch.long, device=dev)
            q = None
            draft_s = torch.zeros(n)
            for name, rows in groups.items():
                if name not in self.drafters:
                    raise DrafterError(f"policy chose unknown drafter '{name}'; the pool has: {', '.join(self.drafters)}")
                t0 = _clock(dev)
                prop = self.drafters[name].propose(ctx, rows, gammas[rows])
                draft_s[rows.cpu()] = _clock(dev) - t0
                g = prop.tokens.shape[1]
                draft[rows, :g] = prop.tokens
                draft_lens[rows] = torch.minimum(prop.lengths, gammas[rows])
                if sampling is not None and prop.probs is not None:
                    if q is None:
                        q = torch.zeros(n, G, self.target.config.vocab_size, device=dev)
                    q[rows, :g] = prop.probs.to(q.dtype)
            if q is not None:  # deterministic rows in a mixed batch: q is one-hot at the draft
                det_rows = [i for name, rows in groups.items() if self.drafters[name].deterministic for i in rows.tolist()]
                if det_rows:
                    idx = torch.tensor(det_rows, device=dev)
                    q[idx] = 0
                    q[idx] = q[idx].scatter(2, draft[idx][:, :, None], 1.0)

            # 3. one target forward over [last committed token, drafts...], as wide as the longest draft
            G = int(draft_lens.max()) if n else 0
            draft = draft[:, :G]
            q = None if q is None else q[:, :G]
            t0 = _clock(dev)
            last = ctx.seqs[torch.arange(n, device=dev), ctx.seq_lens - 1]
            window = torch.cat([last[:, None], draft], dim=1)
            out = kv.forward(window, 1 + draft_lens, capture=layers)
            logits = out.logits
            ctx.target_hidden = out.captured or None
            ctx.memo = {}
            # 4. verify
            if sampling is None:
                p = None
                accepted, bonus = verify_greedy(logits, draft, draft_lens)
            else:
                p = sampling.probs(logits)
                accepted, bonus = verify_sampling(p, draft, draft_lens, q, generator)

            # 5. commit accepted drafts + bonus, cut at EOS and the token budget
            cand = torch.cat([draft, torch.zeros(n, 1, dtype=torch.long, device=dev)], dim=1)
            cand.scatter_(1, accepted[:, None], bonus[:, None])
            m = torch.minimum(accepted + 1, remaining)
            pos = torch.arange(G + 1, device=dev)[None, :]
            is_eos = torch.isin(cand, self.eos) & (pos < m[:, None])
            hit_eos = is_eos.any(1)
            m = torch.where(hit_eos, is_eos.long().argmax(1) + 1, m)
            r_idx, p_idx = (pos < m[:, None]).nonzero(as_tuple=True)
            ctx.seqs[r_idx, ctx.seq_lens[r_idx] + p_idx] = cand[r_idx, p_idx]
            ctx.prev_lens = ctx.seq_lens.clone()
            ctx.seq_lens = ctx.seq_lens + m
            kv.keep(m)
            verify_s = _clock(dev) - t0

            # 6. drafters catch up; full information: every scored drafter scores every committed position
            predictions: dict[str, Predictions] = {}
            all_rows = torch.arange(n, device=dev)
            for name, d in self.drafters.items():
                if not ctx.keeps_scores(name):                          # bandit feedback, or not wanted
                    if d.sync_every_round:
                        d.commit(ctx, all_rows, want_predictions=False)
                    elif name in groups:
                        d.commit(ctx, groups[name], want_predictions=False)
                elif name in deferred:
                    d.commit(ctx, all_rows, want_predictions=False)     # scored at the next flush
                else:
                    predictions[name] = d.commit(ctx, all_rows, want_predictions=True)
            pos_acc = self._position_acceptance(ctx, ctx.prev_lens, predictions, p, m) \
                if feedback == "full" else None

            # 7. records and learning
            round_records = []
            for i in range(n):
                arm = arms_now[i]
                rec = RoundRecord(
                    row=int(row_ids[i]), round=int(n_rounds[row_ids[i]]), drafter=arm.drafter, gamma=arm.gamma,
                    drafted=int(draft_lens[i]), accepted=int(accepted[i]),
                    committed=int(m[i]), draft_s=float(draft_s[i]), verify_s=verify_s, batch=n,
                    position_acceptance=None if pos_acc is None else {k: v[i] for k, v in pos_acc.items()})
                round_records.append(rec)
            records.extend(round_records)
            n_rounds[row_ids] += 1
            info = RoundInfo(row_ids.tolist(), arms_now, round_records)
            bar.update(int(m.sum()))

            done = hit_eos | (ctx.seq_lens - lens[row_ids] >= max_new_tokens)
            if deferred:
                pending.append(_PendingRound(info, ctx.prev_lens.clone(), m.clone()))
                if len(pending) >= score_every or done.any():     # before finished rows leave the batch
                    self._score_pending(ctx, [d for d in deferred if ctx.keeps_scores(d)], pending, policy)
                    pending = []
            else:
                policy.observe(info)
            if done.any():
                for i in done.nonzero().flatten().tolist():
                    r = int(row_ids[i])
                    outputs[r] = ctx.seqs[i, int(lens[r]): int(ctx.seq_lens[i])].tolist()
                    by_eos[r] = bool(hit_eos[i])
                    policy.finish(r)
                keep = (~done).nonzero().flatten()
                row_ids = row_ids[keep]
                kv.select_rows(keep)
                ctx.select_rows(keep)
                for d in self.drafters.values():
                    d.select_rows(keep)
        bar.close()
        wall_s = _clock(dev) - t_start
        return GenerationResult(outputs, records, wall_s, prefill_s, by_eos)

    def _score_pending(self, ctx: DraftContext, deferred: list[str], pending: list["_PendingRound"],
                       policy: ArmPolicy) -> None:
        """Score the pending rounds with the deferred drafters (one catch-up each), complete
        those rounds' records and let the policy observe them, oldest first."""
        all_rows = torch.arange(len(ctx.seq_lens), device=ctx.seqs.device)
        since = pending[0].prev_lens
        scores = {name: self.drafters[name].scores(ctx, all_rows, since) for name in deferred}
        order = [name for name in self.drafters if name in ctx.scored]
        for pr in pending:
            # this round's positions prev_lens .. prev_lens+m-1 are columns prev_lens-since+c of the scores
            cols = (pr.prev_lens - since)[:, None] + torch.arange(int(pr.m.max()), device=since.device)[None, :]
            preds = {name: Predictions(sc.tokens.gather(1, cols.clamp_max(sc.tokens.shape[1] - 1)))
                     for name, sc in scores.items()}
            acc = self._position_acceptance(ctx, pr.prev_lens, preds, None, pr.m)
            for i, rec in enumerate(pr.info.records):
                merged = {**(rec.position_acceptance or {}), **{name: a[i] for name, a in acc.items()}}
                rec.position_acceptance = {name: merged[name] for name in order}   # pool order
            policy.observe(pr.info)

    def _position_acceptance(self, ctx: DraftContext, prev_lens: torch.Tensor, predictions: dict[str, Predictions],
                             p: torch.Tensor | None, m: torch.Tensor) -> dict[str, list[list[float]]]:
        """gamma_pos[j] at each committed position (DESIGN step 6).

        greedy: 1[drafter j's teacher-forced argmax == committed token];
        sampling: sum_x min(p(x), q_j(x)) = 1 - TV(p, q_j), with p the target's warped
        distribution from this round's verify forward (no extra target pass).
        """
        n, M = len(m), int(m.max())
        cols = (prev_lens[:, None] + torch.arange(M, device=m.device)[None, :]).clamp_max(ctx.seqs.shape[1] - 1)
        committed = ctx.seqs.gather(1, cols)
        valid = torch.arange(M, device=m.device)[None, :] < m[:, None]
        out = {}
        for name, pred in predictions.items():
            if p is None:
                acc = (pred.tokens[:, :M] == committed).float()
            elif pred.probs is None:        # deterministic drafter: q is one-hot at its prediction
                tok = pred.tokens[:, :M].clamp_min(0)
                acc = p[:, :M].gather(2, tok[:, :, None]).squeeze(2) * (pred.tokens[:, :M] >= 0)
            else:
                acc = torch.minimum(p[:, :M], pred.probs[:, :M].to(p.dtype)).sum(-1)
            out[name] = [acc[i, : int(m[i])].tolist() for i in range(n)]
        return out
