"""The batched speculative decoding engine: one target forward per round (docs/design.md, "The round").

    for every round, with A active rows:
        1. select     policy.select(rows) -> an arm (drafter, gamma) per row
        2. draft      each drafter proposes for the rows that play it
        3. verify     ONE target forward over [last committed token, drafts...] of every row,
                      then greedy or speculative-sampling verification per row
        4. commit     m_r = accepted + 1 tokens, cut at EOS and max_new_tokens; KV caches roll back per row
        5. catch up   drafters see the committed tokens (feedback: specsel.engine.scoring)
        6. observe    records are kept; the policy learns (now, or when deferred scores come in)
        7. retire     finished rows leave the batch

Autoregressive decoding is the arm with no drafter: the same loop with an empty draft.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from specsel.core.arms import Arm, validate_arms
from specsel.core.drafting import DraftContext, Drafter, DrafterError
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundInfo, RoundRecord
from specsel.core.sampling import RequestSampling, Sampling
from specsel.engine.batch import Batch, Request, Requests, RequestTiming, join_context, prefill_rows, prompt_tensor
from specsel.engine.batch import clock as _clock
from specsel.engine.checks import (
    as_eos,
    as_policy,
    as_prompts,
    check_arrivals,
    check_feedback,
    check_int,
    check_pool,
    check_prompts,
    check_query_ids,
    check_request_sampling,
    check_sampling,
    check_seed,
)
from specsel.engine.prefill import PrefillCache
from specsel.engine.scoring import BanditFeedback, FullInformation
from specsel.engine.verify import flat_distributions, verify_greedy, verify_per_request, verify_sampling


@dataclass
class _Draft:
    """Step 2's output: every active row's draft (right-padded) and its timing."""
    groups: dict[str, torch.Tensor]     # drafter -> local rows that play it
    tokens: torch.Tensor                # [A, G]
    lengths: torch.Tensor               # [A]
    lengths_host: list[int]             # the same on the host
    q_flat: torch.Tensor | None         # [T, V] distributions of the sampled drafts' real positions (flat)
    q_index: torch.Tensor | None        # [A, G] row of q_flat for each draft position (-1: deterministic)
    seconds: list[float]                # [A] the proposal time of each row's group


@dataclass
class _Verdict:
    """Steps 3-4: what the verifier decided, and the target distribution it used."""
    accepted: torch.Tensor              # [A]
    bonus: torch.Tensor                 # [A]
    p: torch.Tensor | None              # [A, G+1, V] warped target probabilities (sampling)


@dataclass
class GenerateOptions:
    """SpecEngine.generate's keyword options (its docstring says what each does)."""
    sampling: Sampling | None = None
    seed: int = 0
    feedback: str | None = None
    progress: bool = False
    score_every: int = 1
    prefill_cache: PrefillCache | None = None
    query_ids: Sequence | None = None
    arrivals: Sequence[float] | None = None
    max_batch: int | None = None
    request_sampling: Sequence[RequestSampling | None] | None = None

    @classmethod
    def of(cls, options: dict) -> "GenerateOptions":
        unknown = [k for k in options if k not in cls.__dataclass_fields__]
        if unknown:
            raise TypeError(f"generate() got an unexpected keyword argument {unknown[0]!r}; it takes "
                            f"max_new_tokens, {', '.join(cls.__dataclass_fields__)}")
        return cls(**options)


@dataclass
class GenerationResult:
    tokens: list[list[int]]                 # generated tokens per prompt (EOS included if hit)
    records: list[RoundRecord]
    wall_s: float                           # prefill + decoding
    prefill_s: float
    stopped_by_eos: list[bool] = field(default_factory=list)
    requests: list[RequestTiming] = field(default_factory=list)   # per prompt: arrival, admission, first token, end

    @property
    def new_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


class SpecEngine:
    """Batched, lossless speculative decoding of `target` with a pool of named drafters."""

    def __init__(self, target, drafters: dict[str, Drafter] | Sequence[Drafter] | None = None,
                 eos_token_id: int | Sequence[int] | None = None):
        self.target = target.eval()
        drafters = check_pool(drafters)         # one drafter object per name (specsel.engine.checks)
        for name, d in drafters.items():
            d.name = name
            d.check_target(target)
        self.drafters: dict[str, Drafter] = drafters
        eos = as_eos(target.generation_config.eos_token_id if eos_token_id is None else eos_token_id)
        self.device = target.device
        self.eos = torch.tensor(eos, dtype=torch.long, device=self.device)
        self.context = getattr(target.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], arms: Arm | Sequence[Arm] | ArmPolicy,
                 max_new_tokens: int = 64, **options) -> GenerationResult:
        """Generate for every prompt: lists of token ids, or a tokenizer's output (a BatchEncoding
        or a dict with "input_ids", e.g. from apply_chat_template; padding is dropped by its attention_mask).
        The other options are keywords (GenerateOptions):

        arms: one Arm for all rows, one per row, or an ArmPolicy choosing every round.
        sampling: None for greedy, else Sampling(temperature, top_p, top_k, min_p); its warped target
        distribution is both what is sampled and the p that speculative verification accepts against.
        feedback: "bandit" (only the played drafter runs) or "full" (every drafter catches up
        each round and reports its acceptance at every committed position); None (default): the
        policy's mode, "full" for a learner that needs full information (HedgeSpec), else "bandit".
        score_every: greedy full information only: drafters with `deferred_scoring` (EAGLE
        heads) score the committed positions of up to this many rounds in one forward, and
        the policy learns of those rounds then (delayed feedback, as a learner gets anyway).
        Fewer, wider drafter forwards; the output is the same. Under bandit feedback it has
        no effect, and a value other than 1 warns (a UserWarning).
        prefill_cache: a PrefillCache shared by calls that decode the same prompts: the target's
        prefill is computed once and copied, and its measured seconds are still charged.
        query_ids: one id (int or str) per prompt, stored as RoundRecord.query of its records
        (default: the prompt's index in this call, as RoundRecord.row).
        arrivals: continuous batching: when each request arrives, in seconds after the call starts
        (default: all at once). max_batch: at most this many requests run at once (default: all);
        a request takes a row as soon as it has arrived and one is free, and leaves it as soon as it
        ends (specsel.engine.batch). result.requests says when each arrived, was admitted, got its
        first token and ended; RoundRecord.time_s when each round ended.
        request_sampling: one RequestSampling (or None: `sampling`) per prompt: its own Sampling or
        greedy, and a seed that fixes its output whatever drafts it (specsel.engine.verify).
        """
        o = GenerateOptions.of(options)
        prompts = as_prompts(prompts)
        max_new_tokens, o.seed = check_int("max_new_tokens", max_new_tokens, 1), check_seed(o.seed)
        policy, feedback = self._check(arms, o, prompts, max_new_tokens)
        arrivals, cap = check_arrivals(o.arrivals, o.max_batch, len(prompts))
        items = [Request(list(p), max_new_tokens, q, RequestTiming(a), decoding=d)
                 for p, q, a, d in zip(prompts, check_query_ids(o.query_ids, len(prompts)), arrivals,
                                       check_request_sampling(o.request_sampling, len(prompts)))]
        policy.start(len(prompts))
        bar = tqdm(total=len(prompts) * max_new_tokens, desc="generate", unit="tok", disable=not o.progress,
                   leave=False)
        batch, wall_s = self._run(Requests(items, cap), policy, feedback, o, bar)
        bar.close()
        return GenerationResult([r.tokens for r in items], batch.records, wall_s, batch.prefill_s + batch.reused_s,
                                [r.by_eos for r in items], [r.timing for r in items])

    @torch.inference_mode()
    def serve(self, stream, arms: Arm | ArmPolicy, **options) -> None:
        """Decode the requests of `stream` (specsel.engine.stream.RequestStream) as they are
        submitted, from other threads, until the stream is closed and every request has ended. The
        same loop as generate(): a request takes a row as soon as one is free, its client hears each
        round's tokens, and a cancelled request leaves at the next round. No records are kept (a
        server runs for days): the stream hands each round's records to its `on_round`. Options:
        sampling, seed, feedback, score_every (generate's)."""
        o = GenerateOptions.of(options)
        if any(getattr(o, k) is not None for k in ("arrivals", "max_batch", "query_ids", "prefill_cache",
                                                    "request_sampling")):
            raise TypeError("serve() takes arrivals, max_batch, query ids and each request's sampling from its "
                            "stream, and no prefill_cache")
        o.seed = check_seed(o.seed)
        policy, feedback = self._check(arms, o)
        policy.start(0)
        self._run(stream, policy, feedback, o, None)

    def check_request(self, prompt: Sequence[int], max_new_tokens: int) -> None:
        """A one-line error when a prompt cannot be decoded here: a bad token id, or too long for the
        target's context with `max_new_tokens` more (what a server checks before it queues one)."""
        check_prompts([prompt], check_int("max_new_tokens", max_new_tokens, 1), self.target.config.vocab_size,
                      self.context)

    def _run(self, requests: Requests, policy: ArmPolicy, feedback: str, o: GenerateOptions, bar):
        """The decode loop: admit what is due, play a round, retire what ended, until no request is
        pending or running. Returns (the batch, wall seconds)."""
        fb = FullInformation(self.drafters, policy, o.sampling is None, o.score_every) if feedback == "full" \
            else BanditFeedback(self.drafters, policy)
        generator = torch.Generator(device=self.device).manual_seed(o.seed)
        # target features drafters draft from (always) or score committed positions from (full information)
        draft_layers = sorted({k for d in self.drafters.values() for k in d.capabilities.feature_layers})
        layers = sorted(set(draft_layers) | fb.capture_layers())
        batch = Batch(None, None, [], [], {})
        keep = not requests.listens              # a stream takes the records round by round instead
        t_start = _clock(self.device)
        requests.started(t_start)
        while requests.pending or batch.rows:
            now = _clock(self.device) - t_start
            gone = requests.cancelled(batch.rows) if batch.rows else []
            if gone:
                fb.settle(batch.ctx)
                self._retire(batch, policy, requests, [r in gone for r in batch.rows], [0] * len(batch.rows), now)
            new = requests.due(now, len(batch.rows))
            if new:
                fb.settle(batch.ctx)            # deferred scores first: the rows change
                self._admit(batch, [(i, requests.get(i)) for i in new], (o.sampling, generator, fb), draft_layers,
                            o.prefill_cache, now)
            if not batch.rows:
                requests.wait(now)
                continue
            self._round(batch, policy, fb, (o.sampling, generator, layers), (requests, bar, t_start))
            if not keep:
                batch.records.clear()
        return batch, _clock(self.device) - t_start + batch.reused_s

    def _round(self, batch: Batch, policy: ArmPolicy, fb, decoding: tuple, run: tuple) -> None:
        """One round of the seven steps (module docstring) for every active row."""
        sampling, generator, layers = decoding
        requests, bar, t_start = run
        arms_now = self._select(policy, batch)                                      # 1
        gammas = [max(0, min(a.gamma, left - 1)) for a, left in zip(arms_now, batch.remaining())]
        fb.open_window(batch.ctx)                           # (drafting past the budget is waste: +1 bonus)
        draft = self._draft(batch.ctx, arms_now, gammas, sampling)                   # 2
        t0 = _clock(self.device)
        verdict = self._verify(batch, draft, sampling, generator, layers)            # 3
        m, hit_eos, cand = self._commit(batch, draft, verdict)                       # 4
        verify_s = _clock(self.device) - t0
        # the round's one device-to-host copy: what every record and every decision below reads
        accepted_h, m_h, eos_h = torch.stack([verdict.accepted, m, hit_eos.long()]).tolist()
        batch.lens = [n + k for n, k in zip(batch.lens, m_h)]
        acceptance = fb.catch_up(batch.ctx, draft.groups, verdict.p, m, m_h)         # 5
        info = self._record(batch, arms_now, draft, accepted_h, m_h, verify_s, acceptance,
                            _clock(self.device) - t_start)                            # 6
        policy.timed(info)                     # timings now; acceptance may reach observe later
        if bar is not None:
            bar.update(sum(m_h))
        if requests.listens:                   # a stream's clients hear the round's tokens (one more copy)
            requests.committed(info.records, cand.tolist())
        done = [bool(e) or left <= 0 for e, left in zip(eos_h, batch.remaining())]
        fb.deliver(batch.ctx, info, m, finishing=any(done))
        if any(done):
            self._retire(batch, policy, requests, done, eos_h, info.records[0].time_s)   # 7

    def _check(self, arms, o: GenerateOptions, prompts=None, max_new_tokens: int = 0) -> tuple[ArmPolicy, str]:
        """Refuse bad arguments with a one-line error (specsel.engine.checks): the options, the
        prompts when given (a stream's are checked as they come, `check_request`), the arms; returns
        the policy to play and the feedback mode (the policy's when `o.feedback` is None)."""
        check_int("score_every", o.score_every, 1)
        check_sampling(o.sampling)
        if prompts is not None:
            check_prompts(prompts, max_new_tokens, self.target.config.vocab_size, self.context)
        policy = as_policy(arms, 0 if prompts is None else len(prompts))
        if policy.arms is not None:
            validate_arms(policy.arms, self.drafters)
        feedback = check_feedback(o.feedback, policy)
        if feedback == "bandit" and o.score_every != 1:
            warnings.warn(f"score_every={o.score_every} has no effect under bandit feedback (only full information "
                          "scores drafters): drop it, or pass feedback='full'", stacklevel=4)  # the caller of generate
        return policy, feedback

    def _admit(self, batch: Batch, new: list[tuple[int, Request]], decoding: tuple, draft_layers, reuse,
               now: float) -> None:
        """Requests `new` ((index, request)) take rows: their prompts are prefilled (or a reused
        prefill copied, specsel.engine.prefill) and join the cache, the context and every drafter's
        state; into an empty batch they start it afresh."""
        sampling, generator, fb = decoding
        t0 = _clock(self.device)
        part = [req.prompt for _, req in new]
        capacity = max(len(req.prompt) + req.budget for _, req in new)
        seqs, lens = prompt_tensor(part, capacity, self.device)
        kv, hidden, reused = prefill_rows(self.target, seqs, lens, draft_layers, reuse, part)
        if not batch.rows:                      # a fresh batch (the first admission, or every row had ended)
            batch.ctx = DraftContext(seqs, lens.clone(), lens.clone(), sampling, generator, scoring=fb.initial_window())
            batch.kv = kv
            batch.ctx.target_hidden = hidden
            for unit in self._units():
                unit.start(batch.ctx)
        else:
            rows = torch.arange(len(batch.rows), len(batch.rows) + len(new), device=self.device)
            batch.kv.extend(kv)
            join_context(batch.ctx, seqs, lens)
            batch.ctx.target_hidden = hidden
            for unit in self._units():
                unit.admit(batch.ctx, rows)
        batch.ctx.target_hidden = None
        batch.rows, batch.lens = batch.rows + [i for i, _ in new], batch.lens + [len(p) for p in part]
        for i, req in new:
            batch.live[i] = req
            req.timing.admitted_s = now
        batch.prefill_s += _clock(self.device) - t0         # the prefill and the drafters' start on it
        batch.reused_s += reused

    def _units(self) -> list:
        """What keeps per-row state: each drafter, or its family once for all its members."""
        units = {}
        for d in self.drafters.values():
            unit = d if d.family is None else d.family
            units[id(unit)] = unit
        return list(units.values())

    def _select(self, policy: ArmPolicy, batch: Batch) -> list[Arm]:
        """Step 1: an arm for every active row."""
        arms_now = policy.select(list(batch.rows))
        if len(arms_now) != len(batch.rows):
            raise RuntimeError(f"policy returned {len(arms_now)} arms for {len(batch.rows)} rows")
        return arms_now

    def _draft(self, ctx: DraftContext, arms_now: list[Arm], gammas: list[int], sampling) -> _Draft:
        """Step 2: each drafter proposes for the rows that play it, in one call per drafter. Sampled
        drafts keep their distributions at their real positions only, flat (q_flat, q_index)."""
        dev, n = self.device, len(arms_now)
        hosts: dict[str, list[int]] = {}
        for i, arm in enumerate(arms_now):
            if arm.drafter is not None and gammas[i] > 0:
                hosts.setdefault(arm.drafter, []).append(i)
        groups = {name: torch.tensor(rows, device=dev) for name, rows in hosts.items()}
        gammas_dev = torch.tensor(gammas, device=dev)
        G = max((gammas[i] for rows in hosts.values() for i in rows), default=0)
        tokens = torch.zeros(n, G, dtype=torch.long, device=dev)
        lengths = torch.zeros(n, dtype=torch.long, device=dev)
        seconds = [0.0] * n
        sampled = []                                        # (rows, Proposal) of drafts that were sampled
        for name, rows, prop in self._proposals(ctx, groups, hosts, gammas_dev, seconds):
            g = prop.tokens.shape[1]
            tokens[rows, :g] = prop.tokens
            lengths[rows] = torch.minimum(prop.lengths, gammas_dev[rows])
            if sampling is not None and prop.probs is not None and not self.drafters[name].capabilities.deterministic:
                sampled.append((rows, prop))
        lengths_host = lengths.tolist()
        G = max(lengths_host, default=0)          # the verify window is as wide as the longest draft
        q_flat, q_index = flat_distributions(sampled, lengths, n, G) if sampled and G else (None, None)
        return _Draft(groups, tokens[:, :G], lengths, lengths_host, q_flat, q_index, seconds)

    def _proposals(self, ctx: DraftContext, groups: dict[str, torch.Tensor], hosts: dict[str, list[int]],
                   gammas: torch.Tensor, seconds: list[float]):
        """(name, rows, Proposal) of every drafter played: one call per drafter, or per family for
        its members; each row is charged the seconds of the call that drafted it."""
        calls: dict[int, list[str]] = {}
        for name in groups:
            if name not in self.drafters:
                raise DrafterError(f"policy chose unknown drafter '{name}'; the pool has: {', '.join(self.drafters)}")
            family = self.drafters[name].family
            calls.setdefault(id(self.drafters[name]) if family is None else id(family), []).append(name)
        out = []
        for names in calls.values():
            t0 = _clock(ctx.seqs.device)
            asks = [(self.drafters[name], groups[name], gammas[groups[name]]) for name in names]
            drafter, family = asks[0][0], asks[0][0].family
            props = [drafter.propose(ctx, *asks[0][1:])] if family is None else family.propose_many(ctx, asks)
            spent = _clock(ctx.seqs.device) - t0
            for name in names:
                for i in hosts[name]:
                    seconds[i] = spent
            out.extend((name, groups[name], prop) for name, prop in zip(names, props))
        return out

    def _verify(self, batch: Batch, draft: _Draft, sampling, generator, layers) -> _Verdict:
        """Step 3: one target forward over [last committed token, drafts...], then verification."""
        ctx, n = batch.ctx, len(batch.rows)
        last = ctx.seqs[torch.arange(n, device=self.device), ctx.seq_lens - 1]
        window = torch.cat([last[:, None], draft.tokens], dim=1)
        out = batch.kv.forward(window, 1 + draft.lengths, capture=layers)
        ctx.target_hidden = out.captured or None
        ctx.round += 1
        own = batch.decodings(sampling)
        if own is not None:                     # rows that decode differently: verified row by row
            return _Verdict(*verify_per_request(out.logits, draft.tokens, draft.lengths, own, batch.generated(),
                                                draft.q_flat, draft.q_index, generator))
        if sampling is None:
            accepted, bonus = verify_greedy(out.logits, draft.tokens, draft.lengths)
            return _Verdict(accepted, bonus, None)
        p = sampling.probs(out.logits)
        accepted, bonus = verify_sampling(p, draft.tokens, draft.lengths, draft.q_flat, draft.q_index, generator)
        return _Verdict(accepted, bonus, p)

    def _commit(self, batch: Batch, draft: _Draft,
                verdict: _Verdict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 4: commit the accepted drafts + the bonus token, cut at EOS and the token
        budget; the target cache keeps exactly those. Returns (m [A], hit_eos [A], the candidates
        [A, G+1]: row i committed its first m[i])."""
        ctx, dev, n = batch.ctx, self.device, len(batch.rows)
        G = draft.tokens.shape[1]
        cand = torch.cat([draft.tokens, torch.zeros(n, 1, dtype=torch.long, device=dev)], dim=1)
        cand.scatter_(1, verdict.accepted[:, None], verdict.bonus[:, None])
        m = torch.minimum(verdict.accepted + 1, torch.tensor(batch.remaining(), device=dev))
        pos = torch.arange(G + 1, device=dev)[None, :]
        is_eos = torch.isin(cand, self.eos) & (pos < m[:, None])
        hit_eos = is_eos.any(1)
        m = torch.where(hit_eos, is_eos.long().argmax(1) + 1, m)
        r_idx, p_idx = (pos < m[:, None]).nonzero(as_tuple=True)
        ctx.seqs[r_idx, ctx.seq_lens[r_idx] + p_idx] = cand[r_idx, p_idx]
        ctx.prev_lens = ctx.seq_lens.clone()
        ctx.seq_lens = ctx.seq_lens + m
        batch.kv.keep(m)
        return m, hit_eos, cand

    def _record(self, batch: Batch, arms_now, draft: _Draft, accepted: list[int], m: list[int], verify_s: float,
                acceptance, time_s: float) -> RoundInfo:
        """Step 6: one RoundRecord per active row, from the round's host copies."""
        n, live = len(batch.rows), batch.live
        for r in batch.rows:
            if live[r].timing.first_token_s is None:
                live[r].timing.first_token_s = time_s
        records = [RoundRecord(
            row=r, round=live[r].rounds, drafter=arms_now[i].drafter, gamma=arms_now[i].gamma,
            drafted=draft.lengths_host[i], accepted=accepted[i], committed=m[i], draft_s=draft.seconds[i],
            verify_s=verify_s, batch=n,
            position_acceptance=None if acceptance is None else {k: v[i] for k, v in acceptance.items()},
            query=live[r].query_id, time_s=round(time_s, 6))
            for i, r in enumerate(batch.rows)]
        batch.records.extend(records)
        for r in batch.rows:
            live[r].rounds += 1
        return RoundInfo(list(batch.rows), arms_now, records)

    def _retire(self, batch: Batch, policy: ArmPolicy, requests: Requests, done: list[bool], hit_eos: list[int],
                now: float) -> None:
        """Step 7: finished (or cancelled) rows hand in their tokens and leave every cache."""
        ctx = batch.ctx
        for i in (i for i, d in enumerate(done) if d):
            r = batch.rows[i]
            req = batch.live.pop(r)
            req.timing.finish_s = now
            req.tokens = ctx.seqs[i, len(req.prompt): batch.lens[i]].tolist()
            req.by_eos = bool(hit_eos[i])
            policy.finish(r)
            if requests.forgets:
                policy.forget(r)
            requests.ended(r)
        kept = [i for i, d in enumerate(done) if not d]
        keep = torch.tensor(kept, dtype=torch.long, device=self.device)
        batch.rows, batch.lens = [batch.rows[i] for i in kept], [batch.lens[i] for i in kept]
        batch.kv.select_rows(keep)
        ctx.select_rows(keep)
        for unit in self._units():
            unit.select_rows(keep)
