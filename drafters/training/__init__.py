"""Training code for drafters (EAGLE heads, LoRA experts), apart from the runtime drafters:
self-distillation, feature extraction, losses. Used by recipes/train_eagle.py and
recipes/train_lora_drafter.py."""
