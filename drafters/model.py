"""`model` drafter: any AutoModelForCausalLM that shares the target's tokenizer.

Its KV cache holds every committed token but the newest few it has not seen yet
(`uncached`, at least the last committed token). A proposal first catches up on all but the
last of them (one ragged forward, no LM head), then drafts one token per forward. After verification the
cache keeps the accepted drafts and drops the rest (RaggedKVCache.keep): nothing is
recomputed and rejected drafts leave no memory behind.
"""
from __future__ import annotations

from typing import Callable

import torch

from specsel.core.drafting import DraftContext, Drafter, Predictions, Proposal, Scorer, choose_tokens
from specsel.modeling.kvcache import RaggedKVCache


class ModelDrafter(Drafter, Scorer):
    """Drafts with a causal LM. `activate`, if given, is called before each of its forwards
    (a LoRA expert makes its adapter the active one on the shared model)."""
    name = "model"

    def __init__(self, model, name: str | None = None, activate: Callable[[], None] | None = None):
        self.model = model.eval()
        self.activate = activate
        self.vocab_size = model.config.vocab_size
        if name:
            self.name = name
        self.kv: RaggedKVCache | None = None
        self._pending = None

    def start(self, ctx: DraftContext) -> None:
        self.kv = RaggedKVCache(self.model, ctx.seqs.shape[0])
        self._pending = None

    def admit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """New rows joined the batch: empty cache rows (their prompts are fed at the next catch-up)."""
        self.kv.extend(RaggedKVCache(self.model, len(rows)))
        self._pending = None

    def select_rows(self, keep: torch.Tensor) -> None:
        self.kv.select_rows(keep)

    # -------------------------------------------------------------- helpers
    def _feed(self, ctx: DraftContext, rows: torch.Tensor, end_offset: int,
              logits: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over seqs[r, cached : seq_len - end_offset] for `rows` (others idle).

        Returns (logits [n, U, V] of those rows, or None with logits=False; widths [n])."""
        B, dev = self.kv.batch_size, ctx.seqs.device
        starts = self.kv.lengths[rows]
        widths = (ctx.seq_lens[rows] - end_offset - starts).clamp_min(0)
        if len(rows) == 0 or int(widths.max()) == 0:
            return torch.zeros(len(rows), 0, self.vocab_size, device=dev), widths
        U = int(widths.max())
        tokens = torch.zeros(B, U, dtype=torch.long, device=dev)
        all_widths = torch.zeros(B, dtype=torch.long, device=dev)
        cols = starts[:, None] + torch.arange(U, device=dev)[None, :]
        tokens[rows] = ctx.seqs[rows[:, None], cols.clamp_max(ctx.seqs.shape[1] - 1)]
        all_widths[rows] = widths
        out = self.kv.forward(tokens, all_widths, logits=logits)
        return (out.logits[rows] if logits else None), widths

    def _catch_up(self, ctx: DraftContext, rows: torch.Tensor, logits: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed and cache every committed token of `rows` the cache lacks, except the last one
        (next round's input). Returns _feed's (logits, widths)."""
        out, widths = self._feed(ctx, rows, end_offset=1, logits=logits)
        if len(rows) and int(widths.max()) > 0:
            self.kv.keep(torch.zeros_like(self.kv.lengths).index_put_((rows,), widths))
        return out, widths

    # -------------------------------------------------------------- interface
    @torch.inference_mode()
    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        self._use_weights()
        B, dev = self.kv.batch_size, ctx.seqs.device
        G = int(gammas.max())
        self._catch_up(ctx, rows, logits=False)         # no LM head: only the cache is needed
        logits, _ = self._feed(ctx, rows, end_offset=0)  # the last committed token, one per row
        step_logits = [logits[:, 0]]
        drafts = [choose_tokens(ctx, step_logits[0])]
        for k in range(1, G):
            tokens = torch.zeros(B, 1, dtype=torch.long, device=dev)
            tokens[rows, 0] = drafts[-1]
            step_widths = torch.zeros(B, dtype=torch.long, device=dev)
            step_widths[rows] = (gammas > k).long()
            step_logits.append(self.kv.forward(tokens, step_widths).logits[rows, 0])
            drafts.append(choose_tokens(ctx, step_logits[-1]))
        draft_logits = torch.stack(step_logits, 1)                          # [n, G, V]
        tokens = torch.stack(drafts, 1)
        self._pending = (rows, gammas, tokens, draft_logits)
        probs = None if ctx.sampling is None else ctx.sampling.probs(draft_logits)
        return Proposal(tokens, gammas.clone(), probs)

    def _use_weights(self) -> None:
        if self.activate is not None:
            self.activate()

    @torch.inference_mode()
    def commit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Keep the accepted drafts in the cache, drop the rest."""
        self._use_weights()
        self._rollback(ctx)

    @torch.inference_mode()
    def score(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
        self._use_weights()
        return self._predictions(ctx, rows, self._rollback(ctx))

    def _rollback(self, ctx: DraftContext):
        """Keep the cached drafts the verifier accepted; returns what was proposed this round."""
        dev = ctx.seqs.device
        n_keep = torch.zeros(self.kv.batch_size, dtype=torch.long, device=dev)
        played = self._pending
        if played is not None:
            p_rows, gammas, tokens, _ = played
            G = tokens.shape[1]
            prev = ctx.prev_lens[p_rows]
            cols = (prev[:, None] + torch.arange(G, device=dev)[None, :]).clamp_max(ctx.seqs.shape[1] - 1)
            new = ctx.seqs[p_rows[:, None], cols]
            in_new = torch.arange(G, device=dev)[None, :] < (ctx.seq_lens[p_rows] - prev)[:, None]
            match = (new == tokens) & in_new & (torch.arange(G, device=dev)[None, :] < gammas[:, None])
            accepted = match.long().cumprod(1).sum(1)
            # the last committed token fed at propose time + the accepted drafts the cache holds
            keep = 1 + torch.minimum(accepted, gammas - 1)
            # never cache the newest committed token: it is next round's input
            keep = torch.minimum(keep, ctx.seq_lens[p_rows] - 1 - self.kv.lengths[p_rows])
            n_keep[p_rows] = keep
        self.kv.keep(n_keep)
        self._pending = None
        return played

    def _predictions(self, ctx: DraftContext, rows: torch.Tensor, played) -> Predictions:
        """Teacher-forced distributions at positions prev_lens..seq_lens-1 of `rows`."""
        dev = ctx.seqs.device
        cached = self.kv.lengths[rows].clone()
        catch_logits, _ = self._catch_up(ctx, rows, logits=True)
        prev, ends = ctx.prev_lens[rows], ctx.seq_lens[rows]
        M = int((ends - prev).max()) if len(rows) else 0
        out = torch.zeros(len(rows), M, self.vocab_size, dtype=self.model.dtype, device=dev)
        from_draft = {}
        if played is not None:
            p_rows, _, _, draft_logits = played
            from_draft = {int(r): i for i, r in enumerate(p_rows.tolist())}
        for i, r in enumerate(rows.tolist()):
            for j, s in enumerate(range(int(prev[i]), int(ends[i]))):
                c = s - int(cached[i]) - 1          # catch-up column that predicts position s
                if c >= 0:
                    out[i, j] = catch_logits[i, c]
                else:                                # covered by this row's own accepted drafts
                    out[i, j] = draft_logits[from_draft[r], s - int(prev[i])]
        valid = torch.arange(M, device=dev)[None, :] < (ends - prev)[:, None]
        tokens = out.argmax(-1).masked_fill(~valid, -1)
        probs = None if ctx.sampling is None else ctx.sampling.probs(out)
        return Predictions(tokens, probs)
