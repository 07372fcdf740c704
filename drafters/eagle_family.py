"""One EAGLE head's per-row state and forwards, shared by the drafters that run it: the plain
head and its LoRA experts (drafters.lora), or a single EagleDrafter (a family of one).

Every member has a slot per batch row, slot = member * B + row, in ONE head KV cache: an adapter
changes the head's keys and values, so each slot keeps its own fed pairs, last output and
kept top-1s, while the target features (the same for every member) are stored once per row.
A head forward serves every slot it is asked for, each slot with its member's adapter (PEFT's
mixed-adapter batches), so rows playing different experts draft in the same forwards
(`propose_many`, called by the engine) and the experts catch up and score the same rounds in
one feed (`score_since`). On this CPU a head forward's cost is mostly per call: four experts'
feeds in one forward cost about half of four forwards.

Pairs and features (docs/design.md, "Drafters"): pair i = (f_i, t_{i+1}); the prediction of
committed position j comes from pair j-2. Slots' pairs are fed lazily, before proposing or when
scores are asked for; draft steps are never kept (they used predicted features).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from specsel.core.drafting import DraftContext, DrafterError, DrafterFamily, Proposal, choose_tokens
from specsel.modeling.kvcache import RaggedKVCache, length_groups

from .eagle_head import EagleHead, resolve_projection_dtype

GROUPED_FEED_MIN = 32     # a feed this wide (a prompt, a long catch-up) runs per length group, on its slots only
BASE = "__base__"         # PEFT's adapter name for rows that run the plain base


def _adapts_projection(head: EagleHead) -> bool:
    """Whether PEFT wrapped the head's own output projection (its logits run outside the
    mixed-adapter forwards)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    return any(name.split(".")[-1] == "lm_head" and isinstance(m, BaseTunerLayer) for name, m in head.named_modules())


class EagleFamily(DrafterFamily):
    """The slots of one EAGLE head's drafters. Settings apply to every member:

    min_confidence: stop a draft at the first token the head is less sure of;
    projection_dtype: the head's output projection dtype ("auto": bfloat16 on CPU when it helps);
    prompt_window: feed the head at most a prompt's last N pairs (None: all)."""

    def __init__(self, target, head: EagleHead, adapters=None, min_confidence: float = 0.0,
                 projection_dtype: torch.dtype | str | None = "auto", prompt_window: int | None = None):
        if not 0.0 <= min_confidence < 1.0:
            raise DrafterError(f"min_confidence must be in [0, 1) (got {min_confidence})")
        if prompt_window is not None and (not isinstance(prompt_window, int) or prompt_window < 1):
            raise DrafterError(f"prompt_window must be a positive number of tokens or None (got {prompt_window!r})")
        # a head trained on rows of N tokens has never attended further back, and feeding a long
        # prompt is most of what a head costs on it. Drafts are verified: output stays lossless.
        self.prompt_window = prompt_window
        self.min_confidence = min_confidence
        self.head = head.eval()
        self.head.projection_dtype = resolve_projection_dtype(projection_dtype, head)
        self.vocab_size = target.config.vocab_size
        self.adapters = adapters          # drafters.lora.AdapterSet on this head, or None
        if adapters is not None and _adapts_projection(head):
            raise DrafterError("a LoRA adapter on the EAGLE head's output projection (lm_head) is not supported: "
                               "train adapters on fc and the decoder layer (recipes/train_lora_drafter.py)")
        self.members: list = []           # the member drafters, by member index
        self.member_adapters: list[str] = []
        self.kv: RaggedKVCache | None = None

    def join(self, drafter, adapter: str | None) -> int:
        """Add a member drafter running `adapter` (None: the plain head); returns its index."""
        if adapter is not None and (self.adapters is None or adapter not in self.adapters.names):
            raise DrafterError(f"lora adapter '{adapter}' is not loaded on this head; add it to its AdapterSet first")
        if self.kv is not None:
            raise DrafterError("an EAGLE family takes new members only before its first batch")
        self.members.append(drafter)
        self.member_adapters.append(adapter or BASE)
        return len(self.members) - 1

    # ------------------------------------------------------------------ slots
    def slots(self, member: int, rows: torch.Tensor) -> torch.Tensor:
        return member * self.B + rows

    def _members_of(self, slots: torch.Tensor) -> list[int]:
        return (slots // self.B).tolist()

    def start(self, ctx: DraftContext) -> None:
        """Prefill features f_0..f_{P-2} of every prompt come with the context (see engine)."""
        B, cap = ctx.seqs.shape
        M, dev, head = len(self.members), ctx.seqs.device, self.head
        self.B = B
        self.kv = RaggedKVCache(head, M * B)
        self.features = torch.zeros(B, cap, head.feature_size, dtype=head.dtype, device=dev)
        self.n_features = torch.zeros(B, dtype=torch.long, device=dev)
        self.last_hidden = torch.zeros(M * B, head.hidden_size, dtype=head.dtype, device=dev)
        self.last_logits = torch.zeros(M * B, head.draft_vocab_size, dtype=head.dtype, device=dev)
        self.pair_top = torch.full((M * B, cap), -1, dtype=torch.long, device=dev)   # top-1 draft id of each fed pair
        # a slot's head cache holds pairs first_pair .. first_pair + kv.lengths - 1
        pairs = ctx.seq_lens - 1
        first = torch.zeros_like(pairs) if self.prompt_window is None else (pairs - self.prompt_window).clamp_min(0)
        self.first_pair = first.repeat(M)
        self._stored = None
        self._store(ctx, torch.zeros(B, dtype=torch.long, device=dev), pairs)

    @torch.inference_mode()
    def admit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Rows `rows` (the last local rows) joined the running batch: every member gets a slot for
        each, laid out as in start (slot = member * B + row), and their prompts' features, from
        ctx.target_hidden ([len(rows), W, H] per layer), are stored as start stores a prompt's."""
        M, B0, k = len(self.members), self.B, len(rows)
        B, cap, dev = B0 + k, ctx.seqs.shape[1], ctx.seqs.device
        # the slots: old slot m*B0 + r moves to m*B + r; new row j of member m takes m*B + B0 + j
        order = torch.tensor([m * B0 + r for m in range(M) for r in range(B0)], dtype=torch.long)
        moved = torch.tensor([m * B + r for m in range(M) for r in range(B0)], dtype=torch.long, device=dev)
        self.kv.extend(RaggedKVCache(self.head, M * k))     # new slots at the end, then into their places
        self.kv.select_rows(torch.tensor([i for m in range(M) for i in [*(m * B0 + r for r in range(B0)),
                                                                         *(M * B0 + m * k + j for j in range(k))]],
                                         dtype=torch.long, device=dev))

        def relayout(old: torch.Tensor, fill) -> torch.Tensor:
            new = old.new_full((M * B, *old.shape[1:]), fill)
            new[moved] = old[order.to(old.device)]
            return new
        widen = lambda t, fill: torch.nn.functional.pad(t, (0, cap - t.shape[1]), value=fill)   # noqa: E731
        self.last_hidden, self.last_logits = relayout(self.last_hidden, 0), relayout(self.last_logits, 0)
        self.pair_top = relayout(widen(self.pair_top, -1), -1)
        self.features = torch.cat([torch.nn.functional.pad(self.features, (0, 0, 0, cap - self.features.shape[1])),
                                   self.features.new_zeros(k, cap, self.features.shape[2])])
        self.n_features = torch.cat([self.n_features, self.n_features.new_zeros(k)])
        pairs = ctx.seq_lens[rows] - 1
        first = torch.zeros_like(pairs) if self.prompt_window is None else (pairs - self.prompt_window).clamp_min(0)
        self.first_pair = relayout(self.first_pair, 0)
        for m in range(M):
            self.first_pair[m * B + B0: m * B + B] = first
        self.B, self._stored = B, None
        window = self._window_features(ctx)                 # the new rows' prompt features [k, W, F]
        if window is not None and len(pairs) and int(pairs.max()) > 0:
            c = torch.arange(min(int(pairs.max()), window.shape[1]), device=dev)[None, :]
            j_idx, c_idx = (c < pairs[:, None]).nonzero(as_tuple=True)
            self.features[rows[j_idx], c_idx] = window[j_idx, c_idx].to(self.features.dtype)
            self.n_features[rows] = pairs
        elif len(pairs) and int(pairs.max()) > 0:
            raise DrafterError(f"drafter '{self.members[0].name}' needs the new rows' prompt features "
                               f"{self.members[0].capabilities.feature_layers}, but the engine passed none")

    def select_rows(self, keep: torch.Tensor) -> None:
        slots = torch.cat([self.slots(m, keep) for m in range(len(self.members))])
        self.kv.select_rows(slots)
        self.features, self.n_features = self.features[keep], self.n_features[keep]
        self.last_hidden, self.last_logits = self.last_hidden[slots], self.last_logits[slots]
        self.pair_top, self.first_pair = self.pair_top[slots], self.first_pair[slots]
        self.B = len(keep)

    def fed_pairs(self, slots: torch.Tensor) -> torch.Tensor:
        """[n] the index after the last pair fed to the head, per slot."""
        return self.first_pair[slots] + self.kv.lengths[slots]

    # ------------------------------------------------------------------ features
    def _window_features(self, ctx: DraftContext) -> torch.Tensor | None:
        layers = self.members[0].capabilities.feature_layers
        if ctx.target_hidden is None or any(k not in ctx.target_hidden for k in layers):
            return None
        return torch.cat([ctx.target_hidden[k] for k in layers], dim=-1)

    def store(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Store this round's true features of `rows` (once, whichever member asks first): the
        verify window's column c is the feature of committed position prev_len - 1 + c; the m
        committed columns are f_{prev-1} .. f_{prev+m-2}."""
        key = (ctx.round, tuple(rows.tolist()))
        if key == self._stored:
            return
        m = ctx.seq_lens - ctx.prev_lens
        counts = torch.zeros_like(m)
        counts[rows] = m[rows]
        self._store(ctx, ctx.prev_lens - 1, counts)
        self._stored = key

    def _store(self, ctx: DraftContext, starts: torch.Tensor, counts: torch.Tensor) -> None:
        """features[r, starts[r] + c] = window features [r, c] for c < counts[r]."""
        window = self._window_features(ctx)
        if window is None:
            if int(counts.max()) > 0:
                layers = self.members[0].capabilities.feature_layers
                raise DrafterError(f"drafter '{self.members[0].name}' needs target features {layers} from the "
                                   "verify forward, but the engine passed none")
            return
        C = min(int(counts.max()), window.shape[1])
        c = torch.arange(C, device=starts.device)[None, :]
        r_idx, c_idx = (c < counts[:, None]).nonzero(as_tuple=True)
        self.features[r_idx, starts[r_idx] + c_idx] = window[r_idx, c_idx].to(self.features.dtype)
        self.n_features = torch.maximum(self.n_features, starts + counts)

    # ------------------------------------------------------------------ head forwards
    def _adapted(self, slots: torch.Tensor, live: torch.Tensor | None = None):
        """The context a head forward over `slots` runs in: each live slot with its member's
        adapter. Slots that feed nothing take the plain base, which PEFT skips; when every live
        slot plays one adapter, that adapter is simply made the active one."""
        if self.adapters is None:
            return nullcontext()
        live = torch.ones(len(slots), dtype=torch.bool) if live is None else live.cpu()
        names = [self.member_adapters[m] if ok else BASE for m, ok in zip(self._members_of(slots), live.tolist())]
        used = {n for n, ok in zip(names, live.tolist()) if ok}
        if len(used) <= 1:
            self.adapters.activate(None if not used or BASE in used else used.pop())
            return nullcontext()
        return self.adapters.mixed(names)

    def _forward_pairs(self, slots: torch.Tensor, tokens: torch.Tensor, feats: torch.Tensor,
                       widths: torch.Tensor) -> torch.Tensor:
        """The head over pending pairs (tokens, features) [n, U] of `slots`, widths [n], cached;
        returns its output hidden states [n, U, H]. When every slot feeds, one forward on the
        cache; else only the feeding slots run, on a copy of their rows (`take`, written back by
        `put`: a masked slot costs a forward almost as much as a live one, the copy far less),
        and a wide feed (a prompt, a long catch-up) in length groups, so no row computes a
        longer one's padding."""
        n, U = tokens.shape
        V, dev = self.kv.batch_size, tokens.device
        live = (widths > 0).nonzero().flatten()
        if len(live) == V and U < GROUPED_FEED_MIN:
            all_tokens = torch.zeros(V, U, dtype=torch.long, device=dev)
            all_feats = feats.new_zeros(V, U, feats.shape[-1])
            all_widths = torch.zeros(V, dtype=torch.long, device=dev)
            all_tokens[slots], all_feats[slots], all_widths[slots] = tokens, feats, widths
            with self._adapted(torch.arange(V, device=dev)):
                out = self.kv.forward(all_tokens, all_widths, features=all_feats, compute_logits=False)
            self.kv.keep(all_widths)
            return out.hidden[slots]
        hidden = feats.new_zeros(n, U, self.head.hidden_size)
        groups = [torch.arange(len(live), device=dev)] if U < GROUPED_FEED_MIN else length_groups(widths[live])
        for group in groups:
            i = live[group]
            w = int(widths[i].max())
            part = self.kv.take(slots[i])
            with self._adapted(slots[i]):
                out = part.forward(tokens[i, :w], widths[i], features=feats[i, :w], compute_logits=False)
            part.keep(widths[i])
            self.kv.put(slots[i], part)
            hidden[i, :w] = out.hidden
        return hidden

    def feed(self, ctx: DraftContext, slots: torch.Tensor, all_logits: bool):
        """Feed every pending pair of `slots` and cache it; remember each slot's last output and
        every fed pair's top-1 (pair_top). Returns (logits [n, U', Vd] of the fed columns from
        the first one any slot keeps, when all_logits, else None; widths [n]; first pair [n])."""
        dev = ctx.seqs.device
        rows = slots % self.B
        starts = self.fed_pairs(slots)
        widths = (torch.minimum(self.n_features[rows], ctx.seq_lens[rows] - 1) - starts).clamp_min(0)
        if len(slots) == 0 or int(widths.max()) == 0:
            return None, widths, starts
        U = int(widths.max())
        cols = (starts[:, None] + torch.arange(U, device=dev)[None, :]).clamp_max(ctx.seqs.shape[1] - 2)
        out_hidden = self._forward_pairs(slots, ctx.seqs[rows[:, None], cols + 1], self.features[rows[:, None], cols],
                                         widths)
        n = torch.arange(len(slots), device=dev)
        last = (widths - 1).clamp_min(0)
        fed = widths > 0
        hidden = out_hidden[n, last]
        self.last_hidden[slots[fed]] = hidden[fed]
        # the output projection is most of a feed's cost: run it only for the pairs whose top-1
        # may be asked for (position j's prediction is pair j-2's top-1) and the last one
        first = starts if all_logits else self._first_scored_pair(ctx, slots, starts, widths)
        if bool((first == starts + last).all()):            # the last pair of each slot only
            logits = self.head.logits(hidden)
            self.last_logits[slots[fed]] = logits[fed]
            self.pair_top[slots[fed], (starts + last)[fed]] = logits[fed].argmax(-1)
            return None, widths, starts
        c = torch.arange(U, device=dev)[None, :]
        if not all_logits:          # only the pairs asked for: slots' first scored pairs differ (ragged prompts)
            i_idx, c_idx = ((c < widths[:, None]) & (c >= (first - starts)[:, None])).nonzero(as_tuple=True)
            logits = self.head.logits(out_hidden[i_idx, c_idx])                                # [pairs, Vd]
            self.pair_top[slots[i_idx], starts[i_idx] + c_idx] = logits.argmax(-1)
            at_last = (c_idx == last[i_idx]).nonzero(as_tuple=True)[0]                 # one per fed slot
            self.last_logits[slots[i_idx[at_last]]] = logits[at_last]
            return None, widths, starts
        c0 = int((first - starts)[fed].min()) if bool(fed.any()) else 0
        logits = self.head.logits(out_hidden[:, c0:])
        self.last_logits[slots[fed]] = logits[n, (last - c0).clamp_min(0)][fed]
        c = torch.arange(c0, U, device=dev)[None, :]
        i_idx, c_idx = ((c < widths[:, None]) & (c >= (first - starts)[:, None])).nonzero(as_tuple=True)
        self.pair_top[slots[i_idx], starts[i_idx] + c0 + c_idx] = logits[i_idx, c_idx].argmax(-1)
        return logits, widths, starts

    def _first_scored_pair(self, ctx: DraftContext, slots: torch.Tensor, starts: torch.Tensor,
                           widths: torch.Tensor) -> torch.Tensor:
        """Per slot, the first pair of this feed whose top-1 is kept: every pair if any position
        may be scored, the last one if its member will not be (ctx.scoring)."""
        last = starts + (widths - 1).clamp_min(0)
        scored = torch.tensor([ctx.keeps_scores(self.members[m].name) for m in self._members_of(slots)],
                              dtype=torch.bool, device=slots.device)
        first = starts if ctx.score_from is None else \
            torch.minimum(torch.maximum(starts, ctx.score_from[slots % self.B] - 2), last)
        return torch.where(scored, first, last)

    # ------------------------------------------------------------------ drafting
    @torch.inference_mode()
    def propose_many(self, ctx: DraftContext, asks) -> list[Proposal]:
        """Chain drafts for every (member, rows, gammas) ask: one head forward per draft step
        for all of them. Step k > 1 feeds the head its own output h in place of the true feature."""
        slots = torch.cat([self.slots(d.member, rows) for d, rows, _ in asks])
        gammas = torch.cat([g for _, _, g in asks])
        V, dev = self.kv.batch_size, ctx.seqs.device
        self.feed(ctx, slots, all_logits=False)
        ready = self.kv.lengths[slots] > 0        # a slot with no fed pair yet (one-token prompt) cannot draft
        lengths = torch.where(ready, gammas, torch.zeros_like(gammas))
        step_logits = [self.last_logits[slots]]
        hidden = self.last_hidden[slots]
        drafts = [choose_tokens(ctx, step_logits[0])]
        lengths = self._stop_unsure(ctx, lengths, 0, step_logits[0])
        # the chain runs on the drafting slots only: on the cache when every slot drafts, else on
        # a copy of their rows, dropped afterwards (draft steps used predicted features: never kept)
        chain = self.kv if len(slots) == V else self.kv.take(slots)
        at = slots if chain is self.kv else torch.arange(len(slots), device=dev)
        chain_slots = torch.arange(V, device=dev) if chain is self.kv else slots
        W = chain.batch_size
        for k in range(1, int(gammas.max())):
            if not bool((lengths > k).any()):     # every slot stopped: no more head forwards
                break
            tokens = torch.zeros(W, 1, dtype=torch.long, device=dev)
            tokens[at, 0] = self.head.draft_to_target[drafts[-1]]
            feats = torch.zeros(W, 1, self.head.hidden_size, dtype=self.head.dtype, device=dev)
            feats[at, 0] = hidden
            widths = torch.zeros(W, dtype=torch.long, device=dev)
            widths[at] = (lengths > k).long()
            with self._adapted(chain_slots, widths > 0):
                out = chain.forward(tokens, widths, features=feats, compute_logits=False)
            hidden = out.hidden[at, 0]
            step_logits.append(self.head.logits(hidden))
            drafts.append(choose_tokens(ctx, step_logits[-1]))
            lengths = self._stop_unsure(ctx, lengths, k, step_logits[-1])
        if chain is self.kv:
            self.kv.keep(torch.zeros(V, dtype=torch.long, device=dev))
        tokens = self.head.draft_to_target[torch.stack(drafts, 1)]
        probs = None if ctx.sampling is None else self.target_probs(ctx, torch.stack(step_logits, 1))
        out, start = [], 0
        for _, rows, _ in asks:
            part = slice(start, start + len(rows))
            out.append(Proposal(tokens[part], lengths[part], None if probs is None else probs[part]))
            start += len(rows)
        return out

    def target_probs(self, ctx: DraftContext, logits: torch.Tensor) -> torch.Tensor:
        """Draft distribution over the TARGET vocabulary (zero outside the draft vocabulary)."""
        q = ctx.sampling.probs(logits)
        if q.shape[-1] == self.vocab_size:
            return q
        full = torch.zeros(*q.shape[:-1], self.vocab_size, dtype=q.dtype, device=q.device)
        return full.index_copy_(q.dim() - 1, self.head.draft_to_target, q)

    def _stop_unsure(self, ctx: DraftContext, lengths: torch.Tensor, k: int, logits: torch.Tensor) -> torch.Tensor:
        """Cut a slot's draft before step k when the head's k-th distribution q_k has its top
        probability < min_confidence (cf. HF's assistant_confidence_threshold, EAGLE-2). The
        cut depends on q_k only, never on the token drawn from it: a rule that looked at the
        drawn token would propose from q_k conditioned on that rule, not from q_k, and
        speculative sampling would lose the target's distribution (a test catches this).
        Greedy: max q_k is the chosen token's probability. On a CPU, where a wider verify
        window costs more, unlikely tokens are not worth verifying."""
        if self.min_confidence <= 0:
            return lengths
        q = torch.softmax(logits.float(), -1) if ctx.sampling is None else ctx.sampling.probs(logits)
        sure = q.max(-1).values >= self.min_confidence
        return torch.where(sure | (lengths <= k), lengths, torch.full_like(lengths, k))

    # ------------------------------------------------------------------ scores
    def score_since(self, member: int, ctx: DraftContext, rows: torch.Tensor, since: torch.Tensor) -> torch.Tensor:
        """[n, M] greedy predictions (target ids, -1 unknown) of `member` at committed positions
        since .. seq_lens-1 of `rows`. The feed also catches up every other member scored in
        this window (they are asked next, for the same rounds): one forward for all of them."""
        scored = [m for m, d in enumerate(self.members)
                  if m == member or (ctx.scoring is not None and d.name in ctx.scoring.drafters)]
        self.feed(ctx, torch.cat([self.slots(m, rows) for m in scored]), all_logits=False)
        slots = self.slots(member, rows)
        ends = ctx.seq_lens[rows]
        M = int((ends - since).max()) if len(rows) else 0
        j = since[:, None] + torch.arange(M, device=ctx.seqs.device)[None, :]
        pair = j - 2
        known = (j < ends[:, None]) & (pair >= 0) & (pair < self.fed_pairs(slots)[:, None])
        top = self.pair_top[slots[:, None], pair.clamp(0, self.pair_top.shape[1] - 1)]
        known &= top >= 0
        return self.head.draft_to_target[top.clamp_min(0)].masked_fill(~known, -1)

    def sampled_predictions(self, member: int, ctx: DraftContext, rows: torch.Tensor):
        """(tokens [n, M], draft distributions [n, M, V]) of `member` at this round's committed
        positions: the remembered output of the last pair fed before, or a column of this feed."""
        dev = ctx.seqs.device
        slots = self.slots(member, rows)
        had = self.fed_pairs(slots)                              # pairs before `had` were fed before
        previous_logits = self.last_logits[slots].clone()
        logits, widths, _ = self.feed(ctx, slots, all_logits=True)
        prev, ends = ctx.prev_lens[rows], ctx.seq_lens[rows]
        M = int((ends - prev).max()) if len(rows) else 0
        # column of the prediction of position prev + j: c = pair - had, -1 = the remembered output
        j = torch.arange(M, device=dev)[None, :]
        pair = prev[:, None] + j - 2
        c = pair - had[:, None]
        known = (j < (ends - prev)[:, None]) & (pair >= 0) & (c < widths[:, None]) & \
            ((c >= 0) | ((c == -1) & (self.kv.lengths[slots][:, None] > 0)))
        columns = previous_logits[:, None] if logits is None else torch.cat([previous_logits[:, None], logits], 1)
        index = (c + 1).clamp(0, columns.shape[1] - 1)
        out = columns.gather(1, index[:, :, None].expand(-1, -1, columns.shape[2]))
        tokens = self.head.draft_to_target[out.argmax(-1)].masked_fill(~known, -1)
        return tokens, self.target_probs(ctx, out) * known[:, :, None]
