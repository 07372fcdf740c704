"""`eagle` drafter: chain drafting with an EAGLE head (drafters.eagle_head) over the
target's features.

Drafting step k>1 feeds the head its own output h in place of the true feature (chain
drafting; EAGLE-2's tree is not used).

Features come from the verification forward of the target (the capabilities'
`feature_layers`, captured by the engine), never from an extra target pass; the prompt's
features come from the prefill. The head's own KV cache holds every fed pair; pairs are fed
lazily (before proposing, or when full-information feedback asks for predictions), draft
steps are always discarded because they used predicted features.

Counterfactual scores (full information) are the head's teacher-forced predictions, i.e.
with TRUE features at every position; a real draft chain uses predicted features after its
first token, so for EAGLE heads full-information scores are an (optimistic) estimate beyond
the first draft position, unlike model and n-gram drafters whose chains equal their
teacher-forced predictions (`replay_exact=False`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from specsel.core.drafting import (
    Capabilities,
    DraftContext,
    Drafter,
    DrafterError,
    Predictions,
    Proposal,
    Scorer,
    choose_tokens,
)
from specsel.modeling.compat import decoder_stack
from specsel.modeling.kvcache import RaggedKVCache

from .eagle_head import EagleHead, eagle3_layers, load_eagle_head, resolve_projection_dtype

# ---------------------------------------------------------------------- drafter

GROUPED_FEED_MIN = 32     # a first feed this wide (a prompt) runs in length groups (RaggedKVCache.prefill)


class EagleDrafter(Drafter, Scorer):
    """Chain drafting with an EAGLE head over features from the target's verify forwards.

    `activate`, if given, is called before each of this drafter's head forwards: a LoRA expert
    (drafters.lora) makes its adapter the active one on the shared head."""
    name = "eagle"

    def __init__(self, target, head: EagleHead | str | Path, name: str | None = None, min_confidence: float = 0.0,
                 projection_dtype: torch.dtype | str | None = "auto", activate: Callable[[], None] | None = None,
                 prompt_window: int | None = None):
        if not isinstance(head, nn.Module):
            head = load_eagle_head(head, target)
        if not 0.0 <= min_confidence < 1.0:
            raise DrafterError(f"min_confidence must be in [0, 1) (got {min_confidence})")
        if prompt_window is not None and (not isinstance(prompt_window, int) or prompt_window < 1):
            raise DrafterError(f"prompt_window must be a positive number of tokens or None (got {prompt_window!r})")
        # the head is fed at most the prompt's last `prompt_window` pairs (None: all of them): a
        # head trained on rows of N tokens has never attended further back, and feeding a long
        # prompt is most of what a head costs on it. Drafts are verified: output stays lossless.
        self.prompt_window = prompt_window
        self.min_confidence = min_confidence   # stop a draft at the first token the head is less sure of
        self.head = head.eval()
        # a setting of the head: drafters sharing one head (LoRA experts) share it too
        self.head.projection_dtype = resolve_projection_dtype(projection_dtype, head)
        self.vocab_size = target.config.vocab_size
        L = len(decoder_stack(target).layers)
        self.capabilities = Capabilities(
            feature_layers=(L,) if head.version == 1 else eagle3_layers(L),
            syncs_every_round=True,     # the round's target features exist only during that round
            replay_exact=False,         # chains use predicted features; scores use true ones
            deferred_scoring=True)      # every fed pair's top-1 is kept, so scores may come rounds later
        self.activate = activate
        if name:
            self.name = name
        self.kv: RaggedKVCache | None = None

    # ------------------------------------------------------------------ state
    def start(self, ctx: DraftContext) -> None:
        """Prefill features f_0..f_{P-2} of every prompt come with the context (see engine)."""
        B, cap = ctx.seqs.shape
        dev = ctx.seqs.device
        self.kv = RaggedKVCache(self.head, B)
        self.features = torch.zeros(B, cap, self.head.feature_size, dtype=self.head.dtype, device=dev)
        self.n_features = torch.zeros(B, dtype=torch.long, device=dev)
        self.last_hidden = torch.zeros(B, self.head.hidden_size, dtype=self.head.dtype, device=dev)
        self.last_logits = torch.zeros(B, self.head.draft_vocab_size, dtype=self.head.dtype, device=dev)
        self.pair_top = torch.full((B, cap), -1, dtype=torch.long, device=dev)   # top-1 draft id of each fed pair
        # pair i = (f_i, t_{i+1}); a row's head cache holds pairs first_pair .. first_pair + kv.lengths - 1
        pairs = ctx.seq_lens - 1
        self.first_pair = torch.zeros_like(pairs) if self.prompt_window is None else \
            (pairs - self.prompt_window).clamp_min(0)
        self._store(ctx, torch.zeros(B, dtype=torch.long, device=dev), pairs)

    def _window_features(self, ctx: DraftContext) -> torch.Tensor | None:
        if ctx.target_hidden is None or any(k not in ctx.target_hidden for k in self.capabilities.feature_layers):
            return None
        return torch.cat([ctx.target_hidden[k] for k in self.capabilities.feature_layers], dim=-1)

    def _store(self, ctx: DraftContext, starts: torch.Tensor, counts: torch.Tensor) -> None:
        """features[r, starts[r] + c] = window features [r, c] for c < counts[r]."""
        window = self._window_features(ctx)
        if window is None:
            if int(counts.max()) > 0:
                layers = self.capabilities.feature_layers
                raise DrafterError(f"drafter '{self.name}' needs target features {layers} from the "
                                   "verify forward, but the engine passed none")
            return
        C = min(int(counts.max()), window.shape[1])
        c = torch.arange(C, device=starts.device)[None, :]
        r_idx, c_idx = (c < counts[:, None]).nonzero(as_tuple=True)
        self.features[r_idx, starts[r_idx] + c_idx] = window[r_idx, c_idx].to(self.features.dtype)
        self.n_features = torch.maximum(self.n_features, starts + counts)

    def select_rows(self, keep: torch.Tensor) -> None:
        self.kv.select_rows(keep)
        self.features, self.n_features = self.features[keep], self.n_features[keep]
        self.last_hidden, self.last_logits = self.last_hidden[keep], self.last_logits[keep]
        self.pair_top = self.pair_top[keep]
        self.first_pair = self.first_pair[keep]

    def fed_pairs(self, rows: torch.Tensor) -> torch.Tensor:
        """[n] the index after the last pair fed to the head, per row."""
        return self.first_pair[rows] + self.kv.lengths[rows]

    # ------------------------------------------------------------------ feeding
    def _feed(self, ctx: DraftContext, rows: torch.Tensor, all_logits: bool):
        """Feed every pending pair (f_i, t_{i+1}) of `rows` and cache it; remember the last
        output and every fed pair's top-1 (pair_top). Returns (logits [n, U, Vd] of the fed
        columns or None, widths [n], first pair [n])."""
        B, dev = self.kv.batch_size, ctx.seqs.device
        starts = self.fed_pairs(rows)
        widths = (torch.minimum(self.n_features[rows], ctx.seq_lens[rows] - 1) - starts).clamp_min(0)
        if len(rows) == 0 or int(widths.max()) == 0:
            return None, widths, starts
        U = int(widths.max())
        cols = (starts[:, None] + torch.arange(U, device=dev)[None, :]).clamp_max(ctx.seqs.shape[1] - 2)
        tokens = torch.zeros(B, U, dtype=torch.long, device=dev)
        feats = torch.zeros(B, U, self.head.feature_size, dtype=self.head.dtype, device=dev)
        tokens[rows] = ctx.seqs[rows[:, None], cols + 1]
        feats[rows] = self.features[rows[:, None], cols]
        all_widths = torch.zeros(B, dtype=torch.long, device=dev)
        all_widths[rows] = widths
        out_hidden = self._forward_pairs(tokens, feats, all_widths)
        last = (widths - 1).clamp_min(0)
        fed = widths > 0
        hidden = out_hidden[rows, last]
        self.last_hidden[rows[fed]] = hidden[fed]
        # the head's output projection is most of a feed's cost: run it only for the pairs whose
        # top-1 may be asked for (position j's prediction is pair j-2's top-1) and the last one
        first = starts if all_logits else self._first_scored_pair(ctx, rows, starts, widths)
        if bool((first == starts + last).all()):            # the last pair of each row only
            logits = self.head.logits(hidden)
            self.last_logits[rows[fed]] = logits[fed]
            self.pair_top[rows[fed], (starts + last)[fed]] = logits[fed].argmax(-1)
            return None, widths, starts
        if not all_logits:          # only the pairs asked for: rows' first scored pairs differ (ragged prompts)
            c = torch.arange(U, device=dev)[None, :]
            r_idx, c_idx = ((c < widths[:, None]) & (c >= (first - starts)[:, None])).nonzero(as_tuple=True)
            logits = self.head.logits(out_hidden[rows[r_idx], c_idx])                     # [pairs, Vd]
            self.pair_top[rows[r_idx], starts[r_idx] + c_idx] = logits.argmax(-1)
            at_last = (c_idx == last[r_idx]).nonzero(as_tuple=True)[0]                # one per fed row
            self.last_logits[rows[r_idx[at_last]]] = logits[at_last]
            return None, widths, starts
        c0 = int((first - starts)[fed].min()) if bool(fed.any()) else 0
        logits = self.head.logits(out_hidden[rows, c0:])
        self.last_logits[rows[fed]] = logits[torch.arange(len(rows), device=dev), (last - c0).clamp_min(0)][fed]
        c = torch.arange(c0, U, device=dev)[None, :]
        r_idx, c_idx = ((c < widths[:, None]) & (c >= (first - starts)[:, None])).nonzero(as_tuple=True)
        self.pair_top[rows[r_idx], starts[r_idx] + c0 + c_idx] = logits[r_idx, c_idx].argmax(-1)
        return logits, widths, starts

    def _forward_pairs(self, tokens: torch.Tensor, feats: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        """The head over pending pairs (tokens, features) [B, U] of widths [B], cached; returns its
        output hidden states [B, U, H]. The first feed (a whole prompt: the head's cache is still
        empty) runs in length groups, so short prompts do not compute a long one's padding."""
        if self.kv.width or int(widths.max()) < GROUPED_FEED_MIN:
            out = self.kv.forward(tokens, widths, features=feats, compute_logits=False)
            self.kv.keep(widths)
            return out.hidden
        hidden = feats.new_zeros(*tokens.shape, self.head.hidden_size)

        def collect(rows, out):
            hidden[rows, : out.hidden.shape[1]] = out.hidden
        self.kv.prefill(tokens, widths, row_kwargs={"features": feats}, on_group=collect, compute_logits=False)
        return hidden

    def _first_scored_pair(self, ctx: DraftContext, rows: torch.Tensor, starts: torch.Tensor,
                           widths: torch.Tensor) -> torch.Tensor:
        """Per row, the first pair of this feed whose top-1 is kept: every pair if any position
        may be scored, the last one if none will be (ctx.scoring)."""
        last = starts + (widths - 1).clamp_min(0)
        if not ctx.keeps_scores(self.name):
            return last
        if ctx.score_from is None:
            return starts
        return torch.minimum(torch.maximum(starts, ctx.score_from[rows] - 2), last)

    def _to_target(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return self.head.draft_to_target[draft_ids]

    def _target_probs(self, ctx: DraftContext, logits: torch.Tensor) -> torch.Tensor:
        """Draft distribution over the TARGET vocabulary (zero outside the draft vocabulary)."""
        q = ctx.sampling.probs(logits)
        if q.shape[-1] == self.vocab_size:
            return q
        full = torch.zeros(*q.shape[:-1], self.vocab_size, dtype=q.dtype, device=q.device)
        return full.index_copy_(q.dim() - 1, self.head.draft_to_target, q)

    def _stop_unsure(self, ctx: DraftContext, lengths: torch.Tensor, k: int, logits: torch.Tensor) -> torch.Tensor:
        """Cut a row's draft before step k when the head's k-th distribution q_k has its top
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

    # ------------------------------------------------------------------ interface
    @torch.inference_mode()
    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        self._use_weights()
        B, dev = self.kv.batch_size, ctx.seqs.device
        G = int(gammas.max())
        self._feed(ctx, rows, all_logits=False)
        # a row with no fed pair yet (one-token prompt, first round) cannot draft
        ready = self.kv.lengths[rows] > 0
        lengths = torch.where(ready, gammas, torch.zeros_like(gammas))
        step_logits = [self.last_logits[rows]]
        hidden = self.last_hidden[rows]
        drafts = [choose_tokens(ctx, step_logits[0])]
        lengths = self._stop_unsure(ctx, lengths, 0, step_logits[0])
        for k in range(1, G):
            if not bool((lengths > k).any()):     # every row stopped: no more head forwards
                break
            tokens = torch.zeros(B, 1, dtype=torch.long, device=dev)
            tokens[rows, 0] = self._to_target(drafts[-1])
            feats = torch.zeros(B, 1, self.head.hidden_size, dtype=self.head.dtype, device=dev)
            feats[rows, 0] = hidden
            widths = torch.zeros(B, dtype=torch.long, device=dev)
            widths[rows] = (lengths > k).long()
            out = self.kv.forward(tokens, widths, features=feats)
            hidden = out.hidden[rows, 0]
            step_logits.append(out.logits[rows, 0])
            drafts.append(choose_tokens(ctx, step_logits[-1]))
            lengths = self._stop_unsure(ctx, lengths, k, step_logits[-1])
        self.kv.keep(torch.zeros(B, dtype=torch.long, device=dev))   # draft steps used predicted features
        tokens = self._to_target(torch.stack(drafts, 1))
        probs = None if ctx.sampling is None else self._target_probs(ctx, torch.stack(step_logits, 1))
        return Proposal(tokens, lengths, probs)

    def _use_weights(self) -> None:
        if self.activate is not None:
            self.activate()

    @torch.inference_mode()
    def commit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Store this round's true features; pairs are fed to the head lazily."""
        self._use_weights()
        # the verify window's column c is the feature of committed position prev_len - 1 + c;
        # the m committed columns are the true features f_{prev-1} .. f_{prev+m-2}
        m = ctx.seq_lens - ctx.prev_lens
        counts = torch.zeros_like(m)
        counts[rows] = m[rows]
        self._store(ctx, ctx.prev_lens - 1, counts)

    @torch.inference_mode()
    def score(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
        self.commit(ctx, rows)
        return self._predictions(ctx, rows)

    @torch.inference_mode()
    def score_since(self, ctx: DraftContext, rows: torch.Tensor, since: torch.Tensor) -> Predictions:
        """Greedy predictions at committed positions since .. seq_lens-1 of `rows`: position j's
        comes from pair j-2 (f_{j-2}, t_{j-1}), whose top-1 was kept when it was fed (here, or
        earlier by propose or commit)."""
        self._use_weights()
        self._feed(ctx, rows, all_logits=False)
        ends = ctx.seq_lens[rows]
        M = int((ends - since).max()) if len(rows) else 0
        j = since[:, None] + torch.arange(M, device=ctx.seqs.device)[None, :]
        pair = j - 2
        known = (j < ends[:, None]) & (pair >= 0) & (pair < self.fed_pairs(rows)[:, None])
        top = self.pair_top[rows[:, None], pair.clamp(0, self.pair_top.shape[1] - 1)]
        known &= top >= 0
        return Predictions(self._to_target(top.clamp_min(0)).masked_fill(~known, -1))

    def _predictions(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
        """Prediction of committed position j comes from pair j-2 (f_{j-2}, t_{j-1}): the
        remembered output of the last pair fed before, or a column of this catch-up."""
        if ctx.sampling is None:
            return self.score_since(ctx, rows, ctx.prev_lens[rows])
        dev = ctx.seqs.device
        had = self.fed_pairs(rows)                              # pairs before `had` were fed before
        previous_logits = self.last_logits[rows].clone()
        logits, widths, _ = self._feed(ctx, rows, all_logits=True)
        prev, ends = ctx.prev_lens[rows], ctx.seq_lens[rows]
        M = int((ends - prev).max()) if len(rows) else 0
        # column of the prediction of position prev + j: c = pair - had, -1 = the remembered output
        j = torch.arange(M, device=dev)[None, :]
        pair = prev[:, None] + j - 2
        c = pair - had[:, None]
        known = (j < (ends - prev)[:, None]) & (pair >= 0) & (c < widths[:, None]) & \
            ((c >= 0) | ((c == -1) & (self.kv.lengths[rows][:, None] > 0)))
        columns = previous_logits[:, None] if logits is None else torch.cat([previous_logits[:, None], logits], 1)
        index = (c + 1).clamp(0, columns.shape[1] - 1)
        out = columns.gather(1, index[:, :, None].expand(-1, -1, columns.shape[2]))
        return Predictions(self._to_target(out.argmax(-1)).masked_fill(~known, -1),
                           self._target_probs(ctx, out) * known[:, :, None])
