"""The default drafter pool for the embedded target, built by name.

`default_pool(target)` returns {name: Drafter}; recipes and the CLI build arms as
pool x gammas from it. Members:

    ngram                  prompt lookup, no weights
    early_exit_{4,8,12}    the target's first k layers + its head, no weights (not in the default set)
    eagle                  the general EAGLE-1 head trained by recipes/train_eagle.py --version 1
    lora_math, lora_code,  domain-expert LoRA adapters on that head (recipes/train_lora_drafter.py):
    lora_medical           one base head in memory, the adapter switched per arm
    eagle3, eagle3_math,   an EAGLE-3 head (recipes/train_eagle.py, small draft vocabulary) and LoRA
    eagle3_code, ...       experts on it (recipes/train_eagle3_expert.py), when their weights are
                           shipped (EAGLE3_NAMES lists the names; a head's experts share one family)

The trained members load from drafters/weights/<target>/ (shipped with the package, < 20 MB).
recipes/example_pool.py shows how to register pools for other targets (Llama-3, Qwen2 with
EAGLE heads from local paths).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from drafters.early_exit import EarlyExitDrafter, ExitGroup
from drafters.ngram import NgramDrafter
from specsel.core.drafting import Drafter, DrafterError

WEIGHTS = Path(__file__).parent / "weights" / "smollm2-135m-instruct"
EAGLE_DIR = WEIGHTS / "eagle"
ADAPTER_DIRS = {"lora_math": WEIGHTS / "lora" / "math", "lora_code": WEIGHTS / "lora" / "code",
                "lora_medical": WEIGHTS / "lora" / "medical", "lora_sql": WEIGHTS / "lora" / "sql",
                "lora_summarization": WEIGHTS / "lora" / "summarization"}
# the EAGLE-3 head and its experts (optional members, built when named and shipped)
EAGLE3_DIR = WEIGHTS / "eagle3"
EAGLE3_ADAPTER_DIRS = {f"eagle3_{d}": WEIGHTS / "eagle3_lora" / d for d in ("math", "code", "medical", "sql",
                                                                             "summarization")}
HEAD_DIRS = {"eagle": EAGLE_DIR, "eagle3": EAGLE3_DIR}
HEAD_ADAPTERS = {"eagle": ADAPTER_DIRS, "eagle3": EAGLE3_ADAPTER_DIRS}
EAGLE3_NAMES = ("eagle3", *EAGLE3_ADAPTER_DIRS)
TRAINED = ("eagle", *ADAPTER_DIRS, *EAGLE3_NAMES)
ROUTER_DIR = WEIGHTS / "router"     # the prompt router fitted for DEFAULT_NAMES (specsel router fit; its README)
EARLY_EXITS = {"early_exit_4": 4, "early_exit_8": 8, "early_exit_12": 12}
DEFAULT_NAMES = ("ngram", "eagle", "lora_math", "lora_code", "lora_medical")
# experts for domains outside the default study: built on request (--drafters), so the default pool,
# and the full information it pays for, stays the same
OPTIONAL_EXPERTS = ("lora_sql", "lora_summarization")
# the head (and each expert) is fed at most a prompt's last 128 pairs. Tuned on tuning queries only
# (MATH/HumanEval/MedQA 31-49, AlpacaEval/CNN-DM 0-19; greedy, gamma 4): every member's accepted
# length was within 0.2% of feeding the 512 pairs it was trained on, while a long prompt's feed,
# most of what full-information scoring costs on general prompts, is up to 4x shorter.
PROMPT_WINDOW = 128


def weights_fingerprint(names: Sequence[str] | None = None) -> str:
    """A short hash of the shipped weight files the named members load (all trained members
    if None): resumable benchmarks and studies refuse to mix results of different weights."""
    import hashlib
    names = list(TRAINED) if names is None else [n for n in names if n in TRAINED]
    dirs = sorted({*(HEAD_DIRS[_head_of(n)] for n in names),
                   *(HEAD_ADAPTERS[_head_of(n)][n] for n in names if n not in HEAD_DIRS)})
    h = hashlib.sha256()
    for d in dirs:
        for f in sorted(d.glob("*.safetensors")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _head_of(name: str) -> str:
    """The shipped head a trained member runs on (its own name for a head)."""
    return next(h for h, adapters in HEAD_ADAPTERS.items() if name == h or name in adapters)


def shipped(name: str) -> bool:
    """Whether a trained member's weights are in drafters/weights (an EAGLE-3 member may not be yet)."""
    head = _head_of(name)
    path = HEAD_DIRS[head] if name == head else HEAD_ADAPTERS[head][name]
    return (path / ("config.json" if name == head else "adapter_config.json")).exists() and \
        (HEAD_DIRS[head] / "config.json").exists()


def pool_names(include_optional: bool = False) -> list[str]:
    """The default pool (plus the optional experts, the shipped EAGLE-3 members and the early
    exits with include_optional=True)."""
    extra = (*OPTIONAL_EXPERTS, *(n for n in EAGLE3_NAMES if n not in DEFAULT_NAMES and shipped(n)), *EARLY_EXITS)
    return [*DEFAULT_NAMES, *(extra if include_optional else ())]


def _trained(target, names: list[str], one_family: bool = True) -> dict[str, Drafter]:
    """Every named shipped head and its named LoRA experts: per head, one base head in memory
    and one family (drafters.eagle_family) drafting every expert's rows together; one_family=False
    gives each expert a head copy and a family of its own (recipes/bench_family.py compares the two)."""
    pool = {}
    for head_name, head_dir in HEAD_DIRS.items():
        members = [n for n in names if n in TRAINED and _head_of(n) == head_name]
        if members:
            pool.update(_head_family(target, head_name, head_dir, members, one_family))
    return pool


def _head_family(target, head_name: str, head_dir: Path, names: list[str], one_family: bool) -> dict[str, Drafter]:
    import copy

    from drafters.eagle import EagleDrafter
    from drafters.eagle_head import load_eagle_head
    from drafters.lora import AdapterSet, lora_experts
    missing = [n for n in names if not shipped(n)]
    if missing:
        how = "recipes/train_eagle.py" if head_name in missing else "recipes/train_eagle3_expert.py"
        raise DrafterError(f"the trained weights of {', '.join(missing)} are missing under {WEIGHTS}; train them with "
                           f"{how} or leave {', '.join(missing)} out of the pool")
    head = load_eagle_head(head_dir, target)
    window = min(filter(None, (trained_length(head_dir), PROMPT_WINDOW)))
    adapters = {n: HEAD_ADAPTERS[head_name][n] for n in names if n != head_name}
    if not adapters or not one_family:
        pool = {head_name: EagleDrafter(target, head, name=head_name, prompt_window=window)}
        for n, path in adapters.items():
            pool[n] = AdapterSet(copy.deepcopy(head), {n: path}).drafter(target, n, n, prompt_window=window)
        return pool
    return lora_experts(target, head, adapters, base_name=head_name, prompt_window=window)


def trained_length(head_dir: Path) -> int | None:
    """The row length (tokens) a shipped head was trained on, from its training.json (None if
    not recorded): the head is fed no more of a prompt than that (EagleDrafter.prompt_window)."""
    import json
    info = head_dir / "training.json"
    if not info.exists():
        return None
    length = json.loads(info.read_text()).get("seq_len")
    return int(length) if length else None


def default_pool(target, names: Sequence[str] | None = None, one_family: bool = True) -> dict[str, Drafter]:
    """Build the named members of the default pool (DEFAULT_NAMES if `names` is None), in order.
    one_family=False: the EAGLE head's experts on separate head copies (for comparisons only)."""
    names = list(DEFAULT_NAMES) if names is None else list(names)
    known = [*DEFAULT_NAMES, *OPTIONAL_EXPERTS, *(n for n in EAGLE3_NAMES if n not in DEFAULT_NAMES), *EARLY_EXITS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DrafterError(f"unknown pool drafter(s) {', '.join(unknown)}; the default pool has: {', '.join(known)}")
    built: dict[str, Drafter] = {}
    if any(n in TRAINED for n in names):
        built.update(_trained(target, names, one_family))
    pool = {}
    exits = ExitGroup(target) if any(n in EARLY_EXITS for n in names) else None   # they score together
    for name in names:
        if name == "ngram":
            drafter = NgramDrafter()
        elif name in EARLY_EXITS:
            drafter = EarlyExitDrafter(target, EARLY_EXITS[name], group=exits)
        else:
            drafter = built[name]
        drafter.name = name
        pool[name] = drafter
    return pool
