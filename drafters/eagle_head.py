"""EAGLE draft heads for LLaMA and Qwen2 targets: the module, its checkpoints and its layouts.

An EAGLE head drafts from the target's own features. Pair i of a row is
(f_i, t_{i+1}): the target feature after token t_i and the embedding of the next token; the
head maps it to a predicted feature f'_{i+1} and the distribution of t_{i+2}.

    EAGLE-1/2 (Li et al. 2024)   x = fc([embed(t_{i+1}); f_i])          f_i = last hidden (after norm)
                                 h = decoder_layer(x)  (no input norm)   logits = target_head(h)
    EAGLE-3 (Li et al. 2025)     f_i = fc([low_i; mid_i; high_i])        (three target layers)
                                 h = f + attn([norm(embed); hidden_norm(f)]) ; h += mlp(norm(h))
                                 logits = own_head(norm(h)) over a reduced draft vocabulary,
                                 target_id = draft_id + d2t[draft_id]

The decoder layer is transformers' LlamaDecoderLayer / Qwen2DecoderLayer (its attention, MLP
and norms), never a copy of llama.py.

Any head may carry a reduced draft vocabulary (`d2t`): logits are computed only for those
target tokens, which is the main saving on a large-vocabulary target on CPU (the embedded
target's 49152-row head costs more than the whole draft layer). The drafter that runs a head
is drafters.eagle.EagleDrafter.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from specsel.core.drafting import DrafterError
from specsel.modeling.compat import cache_kwargs, decoder_stack

_FAMILIES = {}


def _family(model_type: str):
    """(config class, decoder layer class, rotary class, RMSNorm class) of a supported target family."""
    if not _FAMILIES:
        from transformers.models.llama import modeling_llama as llama
        from transformers.models.qwen2 import modeling_qwen2 as qwen2
        _FAMILIES["llama"] = (llama.LlamaConfig, llama.LlamaDecoderLayer, llama.LlamaRotaryEmbedding,
                              llama.LlamaRMSNorm)
        _FAMILIES["qwen2"] = (qwen2.Qwen2Config, qwen2.Qwen2DecoderLayer, qwen2.Qwen2RotaryEmbedding,
                              qwen2.Qwen2RMSNorm)
    if model_type not in _FAMILIES:
        raise DrafterError(f"EAGLE heads support LLaMA and Qwen2 targets (model_type llama/qwen2); got '{model_type}'")
    return _FAMILIES[model_type]


def eagle3_layers(num_layers: int) -> tuple[int, int, int]:
    """The target hidden states EAGLE-3 fuses (HF hidden_states numbering): the inputs of
    layers 2, L//2 and L-3, as in the reference implementation (clamped for very shallow
    test models)."""
    return (min(2, num_layers), num_layers // 2, max(num_layers - 3, 0))


def head_config(target_config, version: int = 1, draft_vocab_size: int | None = None):
    """A one-layer config of the target's family for an EAGLE head."""
    config_cls = _family(target_config.model_type)[0]
    values = target_config.to_dict()
    values.update(num_hidden_layers=1, eagle_version=version,
                  draft_vocab_size=draft_vocab_size or target_config.vocab_size)
    for key in ("layer_types", "architectures", "auto_map"):
        values.pop(key, None)
    config = config_cls(**values)
    config._attn_implementation = "sdpa"
    return config


class EagleHead(nn.Module):
    """One EAGLE draft head. `embed` (and for EAGLE-1 `target_head`) are the target's modules,
    shared, not copied; only fc, the decoder layer (and EAGLE-3's norms and head) are its own."""

    def __init__(self, config, embed: nn.Embedding, target_head: nn.Linear | None = None,
                 d2t: torch.Tensor | None = None):
        super().__init__()
        _, layer_cls, rotary_cls, norm_cls = _family(config.model_type)
        self.config = config
        self.version = int(getattr(config, "eagle_version", 1))
        if self.version not in (1, 3):
            raise DrafterError(f"eagle_version must be 1 (EAGLE-1/2 layout) or 3 (EAGLE-3); got {self.version}")
        H = config.hidden_size
        self.hidden_size = H
        self.embed = [embed]                      # a list: shared, so not registered as our parameter
        self.layer = layer_cls(config, 0)
        self.rotary = rotary_cls(config)
        if self.version == 1:
            self.fc = nn.Linear(2 * H, H, bias=True)
            self.layer.input_layernorm = nn.Identity()     # EAGLE-1's only layer has no input norm
        else:
            self.fc = nn.Linear(3 * H, H, bias=False)
            attn = self.layer.self_attn
            for name in ("q_proj", "k_proj", "v_proj"):  # attention reads [embedding; feature]
                old = getattr(attn, name)
                setattr(attn, name, nn.Linear(2 * H, old.out_features, bias=old.bias is not None))
            self.hidden_norm = norm_cls(H, eps=config.rms_norm_eps)
            self.norm = norm_cls(H, eps=config.rms_norm_eps)
        V = config.vocab_size
        Vd = int(getattr(config, "draft_vocab_size", None) or V)
        if d2t is None:
            d2t = torch.zeros(Vd, dtype=torch.long)
        if d2t.shape != (Vd,):
            raise DrafterError(f"d2t has shape {tuple(d2t.shape)}, expected ({Vd},) = draft_vocab_size")
        draft_to_target = torch.arange(Vd) + d2t.long()
        if int(draft_to_target.min()) < 0 or int(draft_to_target.max()) >= V:
            raise DrafterError("d2t maps draft tokens outside the target vocabulary: wrong d2t for this target")
        self.register_buffer("d2t", d2t.long().clone())
        self.register_buffer("draft_to_target", draft_to_target, persistent=False)
        if self.version == 3:
            self.lm_head = nn.Linear(H, Vd, bias=False)
        else:
            if target_head is None:
                raise DrafterError("an EAGLE-1/2 head drafts through the target's LM head: pass target_head")
            self.target_head = [target_head]
            self.register_buffer("head_rows", torch.empty(0), persistent=False)   # built lazily
        self.feature_size = H if self.version == 1 else 3 * H
        self.projection_dtype: torch.dtype | None = None    # set by EagleDrafter (projection_dtype)
        self._low_weight, self._low_key = None, None
        self.head_bias = None

    # HF-model-like attributes RaggedKVCache relies on
    @property
    def device(self):
        return self.fc.weight.device

    @property
    def dtype(self):
        return self.fc.weight.dtype

    @property
    def draft_vocab_size(self) -> int:
        return self.d2t.shape[0]

    def _projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output projection (weight [draft vocab, H], bias): EAGLE-1/2 use the target's
        head, restricted to the draft vocabulary's rows (built once)."""
        if self.version == 3:
            return self.lm_head.weight, None
        head = self.target_head[0]
        # a target split by a device map may hold its head elsewhere, or offloaded (meta until it runs)
        away = head.weight.is_meta or head.weight.device != self.device
        if self.draft_vocab_size == head.weight.shape[0] and not away:
            return head.weight, head.bias
        if self.head_rows.shape[0] != self.draft_vocab_size or self.head_rows.dtype != head.weight.dtype:
            from accelerate.utils import align_module_device
            with align_module_device(head, self.device):        # the real weights, here, for this copy
                rows = self.draft_to_target.to(head.weight.device)
                self.head_rows = head.weight.detach()[rows].to(self.device).contiguous()
                self.head_bias = None if head.bias is None else head.bias.detach()[rows].to(self.device)
        return self.head_rows, self.head_bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of output hidden states. Without gradients and with
        `projection_dtype` set (EagleDrafter's option), the projection runs in that dtype
        on a low-precision copy of the weight, made once: on a CPU the fp32 projection
        streams the whole weight from memory every call."""
        if self.version == 3:
            hidden = self.norm(hidden)
        weight, bias = self._projection()
        low = self.projection_dtype
        if low is None or low == weight.dtype or torch.is_grad_enabled():
            return F.linear(hidden, weight, bias)
        # a new weight, or one changed in place (inference tensors keep no version): copy again
        key = (weight.data_ptr(), -1 if weight.is_inference() else weight._version, low)
        if self._low_key != key:
            self._low_weight, self._low_key = weight.detach().to(low), key
        out = F.linear(hidden.to(low), self._low_weight)
        return (out if bias is None else out + bias.to(low)).to(hidden.dtype)

    def forward(self, input_ids: torch.Tensor, features: torch.Tensor, attention_mask=None, position_ids=None,
                past_key_values=None, logits_to_keep: int = 0, compute_logits: bool = True, **hf_kwargs):
        """Pairs (features[:, i], input_ids[:, i]) -> SimpleNamespace(hidden, logits).

        features: true target features ([.., feature_size]) or the head's own previous output
        hidden ([.., hidden_size], EAGLE-3 skips fc for those). logits_to_keep=1: logits of
        the last column only (0: all). hf_kwargs: the other keywords of an HF causal LM's
        forward (RaggedKVCache passes them); only `use_cache` (default False) is read, and passed
        on to the attention; the rest are ignored."""
        use_cache = hf_kwargs.get("use_cache", False)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
            position_ids = position_ids.expand(input_ids.shape[0], -1)
        embeds = self.embed[0](input_ids).to(self.dtype)
        features = features.to(self.dtype)
        if self.version == 1:
            x = self.fc(torch.cat([embeds, features], dim=-1))
            residual, attn_in = x, x
        else:
            residual = self.fc(features) if features.shape[-1] != self.hidden_size else features
            attn_in = torch.cat([self.layer.input_layernorm(embeds), self.hidden_norm(residual)], dim=-1)
        position_embeddings = self.rotary(residual, position_ids)
        attn_out, _ = self.layer.self_attn(hidden_states=attn_in, position_embeddings=position_embeddings,
                                           attention_mask=attention_mask, use_cache=use_cache,
                                           **cache_kwargs(self.layer.self_attn, past_key_values))
        h = residual + attn_out
        h = h + self.layer.mlp(self.layer.post_attention_layernorm(h))
        kept = h if not logits_to_keep else h[:, -logits_to_keep:]
        return SimpleNamespace(hidden=h, logits=self.logits(kept) if compute_logits else None)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Save in the public layout: config.json + model.safetensors (EAGLE-1 keys `fc.*`,
        `layers.0.*`; EAGLE-3 keys `fc.*`, `midlayer.*`, `norm.*`, `lm_head.*`, `d2t`).
        dtype: store floating tensors in this dtype (e.g. float16 to halve the file)."""
        from safetensors.torch import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(path / "config.json")
        state = to_checkpoint_keys(self.state_dict(), self.version)
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file({k: v.contiguous() for k, v in state.items()}, path / "model.safetensors")


def to_checkpoint_keys(state: dict, version: int) -> dict:
    layer = "layers.0." if version == 1 else "midlayer."
    out = {}
    for k, v in state.items():
        if k.startswith("layer."):
            out[layer + k[len("layer."):]] = v
        elif k == "hidden_norm.weight":
            out["midlayer.hidden_norm.weight"] = v
        elif k.startswith("rotary."):
            continue
        else:
            out[k] = v
    return out


def from_checkpoint_keys(state: dict, version: int) -> dict:
    layer = "layers.0." if version == 1 else "midlayer."
    out = {}
    for k, v in state.items():
        if k == "midlayer.hidden_norm.weight":
            out["hidden_norm.weight"] = v
        elif k.startswith(layer):
            out["layer." + k[len(layer):]] = v
        elif k in ("embed_tokens.weight", "t2d") or k.startswith("rotary"):
            continue            # the target's embedding is shared; t2d is implied by d2t
        else:
            out[k] = v
    return out


_DAMAGED = "re-train it (recipes/train_eagle.py) or restore it (the shipped one: git checkout drafters/weights)"


def _read_state(path: Path) -> dict:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            try:
                if name == "model.safetensors":
                    from safetensors.torch import load_file
                    return load_file(path / name)
                return torch.load(path / name, map_location="cpu", weights_only=True)
            except Exception as err:        # SafetensorError, UnpicklingError, OSError: a damaged file
                first = (str(err).splitlines() or [""])[0]
                raise DrafterError(f"{path / name}: cannot read the EAGLE head's weights ({type(err).__name__}: "
                                   f"{first}); {_DAMAGED}") from None
    raise DrafterError(f"{path} has no model.safetensors or pytorch_model.bin: point at an EAGLE head directory")


def load_eagle_head(path: str | Path, target) -> EagleHead:
    """Load an EAGLE-1/2 or EAGLE-3 head from a local directory for `target` (version from the keys)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise DrafterError(f"no config.json in {path}: point at a directory holding an EAGLE head "
                           "(config.json + model.safetensors or pytorch_model.bin)")
    state = _read_state(path)
    version = 3 if any(k.startswith("midlayer.") for k in state) else 1
    if version == 1 and not any(k.startswith("layers.0.") for k in state):
        raise DrafterError(f"{path}: unrecognised EAGLE checkpoint (no `layers.0.*` or `midlayer.*` keys)")
    try:
        raw = json.loads((path / "config.json").read_text())
    except ValueError as err:
        raise DrafterError(f"{path / 'config.json'}: not valid JSON ({err}); {_DAMAGED}") from None
    if not isinstance(raw, dict):
        raise DrafterError(f"{path / 'config.json'}: not a JSON object; {_DAMAGED}")
    tc = target.config
    for key in ("hidden_size", "vocab_size"):
        if key in raw and raw[key] != getattr(tc, key):
            raise DrafterError(f"EAGLE head at {path} has {key}={raw[key]} but the target has {getattr(tc, key)}: "
                               "this head belongs to another target")
    draft_vocab = int(raw.get("draft_vocab_size") or (state["d2t"].shape[0] if "d2t" in state else tc.vocab_size))
    config = head_config(tc, version, draft_vocab)
    for key in ("intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
                "attention_bias", "mlp_bias"):
        if key in raw and raw[key] is not None:
            setattr(config, key, raw[key])
    base = decoder_stack(target)
    head = EagleHead(config, base.embed_tokens, target.get_output_embeddings(), d2t=state.get("d2t"))
    missing, unexpected = head.load_state_dict(from_checkpoint_keys(state, version), strict=False)
    missing = [k for k in missing if k not in ("d2t",)]
    if missing or unexpected:
        raise DrafterError(f"EAGLE head at {path} does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return head.to(device=target.device, dtype=target.dtype).eval()


def new_eagle_head(target, version: int = 1, draft_tokens: torch.Tensor | None = None, seed: int = 0) -> EagleHead:
    """A freshly initialised head for `target` (to train); `draft_tokens`: the target ids of a
    reduced draft vocabulary, ascending (None: the full vocabulary)."""
    d2t = None
    if draft_tokens is not None:
        draft_tokens = torch.as_tensor(draft_tokens, dtype=torch.long).sort().values
        d2t = draft_tokens - torch.arange(len(draft_tokens))
    config = head_config(target.config, version, None if d2t is None else len(d2t))
    torch.manual_seed(seed)
    base = decoder_stack(target)
    head = EagleHead(config, base.embed_tokens, target.get_output_embeddings(), d2t=d2t)
    return head.to(device=target.device, dtype=target.dtype)


def resolve_projection_dtype(option: torch.dtype | str | None, head: EagleHead) -> torch.dtype | None:
    """EagleDrafter's projection_dtype: None or a dtype as given; "auto" = bfloat16 for a float32
    head on a CPU with native bf16 matrix products (AVX512-BF16/AMX), else the head's own dtype.
    On the 2-core dev CPU the 8192-row projection of 24 hidden states took 0.7 ms in bf16 against
    3.0 ms in fp32 (memory-bound: fp32 reads 19 MB of weight per call). Drafts may differ from
    full precision at near-ties; the verifier keeps the output exact either way."""
    if option is None or isinstance(option, torch.dtype):
        return option
    if option != "auto":
        raise DrafterError(f"projection_dtype must be None, a torch dtype or 'auto' (got {option!r})")
    if head.dtype == torch.float32 and head.device.type == "cpu" and torch.backends.mkldnn.is_available() \
            and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


