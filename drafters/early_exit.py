"""`early_exit` drafter: the target's first k decoder layers + its final norm + its LM head.

No training is needed and no weights are copied: the drafter is a thin causal LM of the
target's own class whose `embed_tokens`, first k `layers`, `norm`, `rotary_emb` and
`lm_head` ARE the target's modules (same tensors). Only its KV cache is its own (k layers),
so all drafting, catch-up and rollback logic is ModelDrafter's.

Cost per drafted token: about k/L of a target forward through the decoder layers, plus the
FULL LM head (hidden x vocab). For small k on a large-vocabulary target the head dominates:
on the embedded 49152-vocabulary default the head alone costs as much as several decoder
layers, so a 1-layer early exit is far from 1/L of the target's cost.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from specsel.core.drafting import Capabilities, DrafterError, Predictions
from specsel.modeling.compat import decoder_stack

from .model import ModelDrafter


def _base_model(model):
    """The decoder stack of a causal LM (`model.model` for LLaMA, Qwen2 and most HF decoders)."""
    base = decoder_stack(model)
    if base is None or not isinstance(getattr(base, "layers", None), nn.ModuleList):
        raise DrafterError(
            f"early_exit needs a decoder-only causal LM with `.model.layers` (LLaMA, Qwen2, ...); "
            f"{type(model).__name__} has none")
    return base


def _share_output_hooks(target_base, thin_base) -> None:
    """Make the thin model reuse the target's output-capturing hooks instead of adding its own.

    transformers installs forward hooks on the decoder layers the first time a model is asked
    for hidden states / attentions, once per model. The layers are shared, so if both models
    installed them the target would record every shared layer twice. Install the target's
    hooks now (idempotent, inactive unless outputs are requested) and mark the thin model as
    hooked: the hooks are model-agnostic and serve both.
    """
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:  # older/newer transformers without lazily installed hooks: nothing to share
        return
    maybe_install_capturing_hooks(target_base)
    thin_base._output_capturing_hooks_installed = True


def early_exit_model(target, num_layers: int):
    """A causal LM of `type(target)` running the target's first `num_layers` layers, norm and head.

    Shares every tensor with `target` (nothing is allocated but the module shells).
    """
    base = _base_model(target)
    total = len(base.layers)
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or not 1 <= num_layers < total:
        raise DrafterError(f"early_exit num_layers must be an int in [1, {total - 1}] for a {total}-layer target "
                           f"(got {num_layers!r})")
    for i, layer in enumerate(base.layers[:num_layers]):
        idx = getattr(getattr(layer, "self_attn", None), "layer_idx", i)
        if idx != i:
            raise DrafterError(f"early_exit: target layer {i} indexes the KV cache as layer {idx}; "
                               "only targets whose layers are numbered 0..L-1 are supported")

    config = copy.deepcopy(target.config)
    config.num_hidden_layers = num_layers
    for attr in ("layer_types",):  # per-layer config lists must match the layer count
        value = getattr(config, attr, None)
        if isinstance(value, (list, tuple)):
            setattr(config, attr, type(value)(value[:num_layers]))
    with torch.device("meta"):    # module shells only: every tensor is replaced by the target's
        thin = type(target)(config)
    thin_base = _base_model(thin)

    prefix = getattr(target, "base_model_prefix", "model") or "model"
    for name, _ in list(thin.named_children()):        # lm_head (and any other head-side module)
        if name != prefix:
            setattr(thin, name, getattr(target, name))
    for name, _ in list(thin_base.named_children()):    # embed_tokens, norm, rotary_emb, ...
        setattr(thin_base, name, getattr(base, name))
    thin_base.layers = nn.ModuleList(list(base.layers[:num_layers]))

    # every tensor must be the target's own (by identity: a target split by a device map keeps
    # offloaded weights on the meta device, loaded by accelerate's hooks when the layer runs)
    shared = {id(t) for t in [*target.parameters(), *target.buffers()]}
    left = [n for n, t in [*thin.named_parameters(), *thin.named_buffers()] if id(t) not in shared]
    if left:
        raise DrafterError(f"early_exit: could not share {', '.join(left)} with the {type(target).__name__} "
                           "target; this architecture is not supported")
    thin.generation_config = copy.deepcopy(target.generation_config)
    _share_output_hooks(base, thin_base)
    return thin.eval()


class ExitGroup:
    """Early exits sharing one target's final norm and LM head. Their full-information scores
    come from one matmul for every member (a taller GEMM costs far less than several short
    ones on CPU); the pool builds one group and passes it to each member."""

    def __init__(self, target):
        self.base = _base_model(target)
        self.head = target.get_output_embeddings()
        self.depths: set[int] = set()
        self._round: tuple | None = None          # (round, rows) the cached predictions are for
        self._cached: dict[int, Predictions] = {}

    def add(self, depth: int) -> None:
        self.depths.add(depth)

    def reset(self) -> None:
        self._round, self._cached = None, {}

    def predictions(self, ctx, rows, depth: int) -> Predictions:
        """norm + head on this round's target features at the committed positions of `rows`
        (padded positions are skipped), for every member depth captured this round."""
        key = (ctx.round, tuple(rows.tolist()))
        if key != self._round:
            m = (ctx.seq_lens - ctx.prev_lens)[rows]
            M = int(m.max()) if len(rows) else 0
            valid = torch.arange(M, device=m.device)[None, :] < m[:, None]          # [n, M]
            depths = sorted(k for k in ctx.target_hidden if k in self.depths)
            features = torch.stack([ctx.target_hidden[k][rows, :M][valid] for k in depths])   # [D, valid, H]
            logits = self.head(self.base.norm(features))                                    # [D, valid, V]
            self._cached = {}
            for d, k in enumerate(depths):
                tokens = torch.full((len(rows), M), -1, dtype=torch.long, device=m.device)
                tokens[valid] = logits[d].argmax(-1)
                probs = None
                if ctx.sampling is not None:
                    probs = torch.zeros(len(rows), M, logits.shape[-1], dtype=logits.dtype, device=m.device)
                    probs[valid] = ctx.sampling.probs(logits[d])
                self._cached[k] = Predictions(tokens, probs)
            self._round = key
        return self._cached[depth]


class EarlyExitDrafter(ModelDrafter):
    """Drafts with the target's first `num_layers` decoder layers + final norm + LM head.

    No training needed; shares the target's weights (no copy), keeps its own k-layer KV cache.
    Valid num_layers: 1 .. L-1 for an L-layer target. Cost per draft token is ~k/L of a target
    forward plus the full LM head, which dominates for small k on large vocabularies (e.g. the
    embedded 49152-token target). Early exits of one target score together when they share an
    `ExitGroup` (drafters.pool passes one); without one, each scores alone.
    """
    name = "early_exit"

    def __init__(self, target, num_layers: int, name: str | None = None, group: ExitGroup | None = None):
        self.num_layers = num_layers
        self.target_layers = len(_base_model(target).layers)
        super().__init__(early_exit_model(target, num_layers), name=name)
        # HF hidden_states[k] = output of the first k layers
        self.capabilities = Capabilities(scoring_layers=(num_layers,))
        self.group = ExitGroup(target) if group is None else group
        self.group.add(num_layers)

    def start(self, ctx) -> None:
        super().start(ctx)
        self.group.reset()

    def admit(self, ctx, rows) -> None:
        super().admit(ctx, rows)
        self.group.reset()

    @torch.inference_mode()
    def score(self, ctx, rows) -> Predictions:
        """Full information for free: the target's verify forward already ran this drafter's
        layers on the true prefix, so its teacher-forced prediction at each committed position
        is norm + head on the target's layer-k features (window column i predicts the i-th
        committed token). Only the LM head is paid; the drafter's own cache catches up lazily
        when it is next played."""
        hidden = None if ctx.target_hidden is None else ctx.target_hidden.get(self.num_layers)
        if hidden is None:
            return super().score(ctx, rows)
        self.commit(ctx, rows)          # roll back its own drafts
        return self.group.predictions(ctx, rows, self.num_layers)
