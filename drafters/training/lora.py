"""Fresh trainable LoRA adapters for drafter bases (recipes/train_lora_drafter.py)."""
from __future__ import annotations

import torch
from torch import nn

from drafters.eagle_head import EagleHead


def new_lora(base: nn.Module, rank: int = 8, alpha: int = 16, seed: int = 0):
    """A trainable PEFT model with one fresh LoRA adapter on every linear layer of `base`
    (EAGLE head: fc and the decoder layer; causal LM: attention and MLP projections)."""
    from peft import LoraConfig, get_peft_model
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    if isinstance(base, EagleHead):
        modules.append("fc")
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=modules, bias="none")
    return get_peft_model(base, config)
