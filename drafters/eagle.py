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

import torch
from torch import nn

from specsel.core.drafting import Capabilities, DraftContext, Drafter, DrafterError, Predictions, Proposal, Scorer
from specsel.modeling.compat import decoder_stack

from .eagle_family import EagleFamily
from .eagle_head import EagleHead, eagle3_layers, load_eagle_head

# ---------------------------------------------------------------------- drafter

class EagleDrafter(Drafter, Scorer):
    """Chain drafting with an EAGLE head over features from the target's verify forwards.

    Its per-row state lives in an EagleFamily (drafters.eagle_family): its own by default, built
    from the settings (min_confidence, projection_dtype, prompt_window: see EagleFamily), or the
    `family` given, shared with the head's other drafters, running `adapter` (a LoRA expert,
    drafters.lora; None: the plain head). A family's settings are its members'."""
    name = "eagle"

    def __init__(self, target, head: EagleHead | str | Path, name: str | None = None,
                 family: EagleFamily | None = None, adapter: str | None = None, **settings):
        if not isinstance(head, nn.Module):
            head = load_eagle_head(head, target)
        if family is None:
            family = EagleFamily(target, head, **settings)
        elif settings:
            raise DrafterError(f"EagleDrafter: {', '.join(settings)} belong to the family; set them when building "
                               "the EagleFamily")
        elif family.head is not head:
            raise DrafterError("EagleDrafter: the family runs another head; pass family.head")
        self.head = head
        self.vocab_size = target.config.vocab_size
        L = len(decoder_stack(target).layers)
        self.capabilities = Capabilities(
            feature_layers=(L,) if head.version == 1 else eagle3_layers(L),
            syncs_every_round=True,     # the round's target features exist only during that round
            replay_exact=False,         # chains use predicted features; scores use true ones
            deferred_scoring=True)      # every fed pair's top-1 is kept, so scores may come rounds later
        if name:
            self.name = name
        self.family = family
        self.member = family.join(self, adapter)

    @property
    def prompt_window(self) -> int | None:
        return self.family.prompt_window

    def fed_pairs(self, rows: torch.Tensor) -> torch.Tensor:
        """[n] the index after the last pair fed to the head, per row."""
        return self.family.fed_pairs(self.family.slots(self.member, rows))

    # ------------------------------------------------------------------ interface
    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        return self.family.propose_many(ctx, [(self, rows, gammas)])[0]

    @torch.inference_mode()
    def commit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Store this round's true features; pairs are fed to the head lazily."""
        self.family.store(ctx, rows)

    @torch.inference_mode()
    def score(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
        self.commit(ctx, rows)
        if ctx.sampling is None:
            return self.score_since(ctx, rows, ctx.prev_lens[rows])
        return Predictions(*self.family.sampled_predictions(self.member, ctx, rows))

    @torch.inference_mode()
    def score_since(self, ctx: DraftContext, rows: torch.Tensor, since: torch.Tensor) -> Predictions:
        """Greedy predictions at committed positions since .. seq_lens-1 of `rows`: position j's
        comes from pair j-2 (f_{j-2}, t_{j-1}), whose top-1 was kept when it was fed (here, or
        earlier by propose or commit)."""
        return Predictions(self.family.score_since(self.member, ctx, rows, since))
