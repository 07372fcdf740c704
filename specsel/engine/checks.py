"""The engine's argument checks: bad input to SpecEngine (its pool) and SpecEngine.generate (prompts,
arms, counts, seed, sampling) is refused with a one-line error that names the fix, before anything
runs. What passes is returned in the one form the engine computes with (lists of ints, a policy)."""
from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import torch

from specsel.core.drafting import Drafter, DrafterError
from specsel.core.policy import ArmPolicy, FixedArms
from specsel.core.sampling import RequestSampling, Sampling
from specsel.core.seeds import MAX_SEED

_PROMPTS = "prompts must be a list of token-id lists"


def _kind(value) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _is_int(value) -> bool:
    """An integer (Python, numpy or a 0-d integer tensor), not a bool."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.dtype.is_floating_point and not value.dtype.is_complex \
            and value.dtype != torch.bool
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]; else a one-line ValueError naming `name`."""
    span = f">= {low}" if high is None else f"in [{low}, {high}]"
    if not _is_int(value):
        raise ValueError(f"{name} must be an integer {span} (got {value!r})")
    if int(value) < low or (high is not None and int(value) > high):
        raise ValueError(f"{name} must be {span} (got {value!r})")
    return int(value)


def check_seed(seed, name: str = "seed") -> int:
    """`seed` as an int in [0, MAX_SEED] (what torch.Generator.manual_seed takes)."""
    if not _is_int(seed) or not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"{name} must be an integer >= 0 (and below 2**64) (got {seed!r})")
    return int(seed)


def check_sampling(sampling) -> None:
    if sampling is not None and not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be None (greedy) or a Sampling, e.g. Sampling(temperature=0.7, top_p=0.9); "
                        f"got {_kind(sampling)}")


def check_request_sampling(decodings, n_prompts: int) -> list:
    """generate(request_sampling=...): None (every prompt decodes with `sampling`), or one
    RequestSampling (or None: the call's own) per prompt."""
    if decodings is None:
        return [None] * n_prompts
    if isinstance(decodings, (RequestSampling, Sampling)) or not hasattr(decodings, "__iter__"):
        raise TypeError(f"request_sampling must be a list with one RequestSampling (or None) per prompt; got "
                        f"{_kind(decodings)}")
    out = list(decodings)
    if len(out) != n_prompts:
        raise ValueError(f"got {len(out)} request_sampling entries for {n_prompts} prompts: pass one per prompt")
    bad = next((i for i, d in enumerate(out) if d is not None and not isinstance(d, RequestSampling)), None)
    if bad is not None:
        raise TypeError(f"request_sampling[{bad}] is {_kind(out[bad])}: use RequestSampling(Sampling(...), seed=...), "
                        f"RequestSampling() for greedy, or None for the call's own sampling")
    return out


def _token_ids(prompt, i: int) -> list[int]:
    """One prompt as a list of ints (a list/tuple of ints, or a 1-d integer tensor or array)."""
    if isinstance(prompt, (str, bytes)):
        raise TypeError(f"prompt {i} is {_kind(prompt)}: encode it with the tokenizer first "
                        "(a prompt is a list of token ids)")
    if isinstance(prompt, (torch.Tensor, np.ndarray)):
        if prompt.ndim != 1:
            raise TypeError(f"prompt {i} is a {prompt.ndim}-d {type(prompt).__name__}: a prompt is a 1-d list of "
                            "token ids")
        prompt = prompt.tolist()
    elif not isinstance(prompt, (list, tuple, range)):
        raise TypeError(f"prompt {i} is {_kind(prompt)}; {_PROMPTS}: e.g. [[1, 42, 7]]")
    bad = next((j for j, x in enumerate(prompt) if not _is_int(x)), None)
    if bad is not None:
        x = prompt[bad]
        what = "None" if x is None else f"{_kind(x)} ({x!r})"
        raise TypeError(f"prompt {i} holds {what} at position {bad}: token ids are integers; encode the text with "
                        "the target's tokenizer")
    return [int(x) for x in prompt]


def _from_encoding(enc: Mapping) -> list:
    """The prompts of a tokenizer's output (a BatchEncoding or a dict with "input_ids": a batch of
    lists or a 2-d tensor; one flat list or 1-d tensor is one prompt, as apply_chat_template returns
    for one conversation), without the padded positions its "attention_mask" marks (left or right)."""
    if "input_ids" not in enc:
        raise TypeError(f"{_PROMPTS}; got {_kind(enc)} without 'input_ids': pass the tokenizer's output "
                        "(with input_ids) or a list of token-id lists")
    ids, mask = enc["input_ids"], enc.get("attention_mask")

    def rows(x, name: str) -> list:
        if isinstance(x, (torch.Tensor, np.ndarray)):
            if x.ndim not in (1, 2):
                raise TypeError(f"{name} is a {x.ndim}-d {type(x).__name__}: pass a batch of token-id lists")
            x = x.tolist()
        if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
            raise TypeError(f"{name} must be a batch of token-id lists (got {_kind(x)})")
        x = list(x)
        return [x] if x and all(_is_int(t) for t in x) else x     # one flat prompt (one conversation)

    ids = rows(ids, "input_ids")
    if mask is None:
        return ids
    mask = rows(mask, "attention_mask")
    if len(mask) != len(ids) or any(not hasattr(m, "__len__") or not hasattr(p, "__len__") or len(m) != len(p)
                                    for m, p in zip(mask, ids)):
        raise ValueError("attention_mask does not have the shape of input_ids: pass the tokenizer's output as is")
    return [[t for t, keep in zip(p, m) if keep] for p, m in zip(ids, mask)]


def as_prompts(prompts) -> list[list[int]]:
    """The prompts as lists of ints; a one-line TypeError for a str, a flat list of ints, or non-integers.
    A tokenizer's output (a BatchEncoding, or a dict with "input_ids") gives its input_ids, unpadded."""
    if isinstance(prompts, Mapping):
        prompts = _from_encoding(prompts)
    if isinstance(prompts, (str, bytes)):
        raise TypeError(f"{_PROMPTS}; got {_kind(prompts)}: encode it with the tokenizer first, "
                        "e.g. [tokenizer.encode(text)]")
    if isinstance(prompts, (torch.Tensor, np.ndarray)) and prompts.ndim != 2:
        if prompts.ndim == 1:
            raise TypeError(f"{_PROMPTS}; got a 1-d {type(prompts).__name__}: wrap a single prompt in a list: [ids]")
        raise TypeError(f"{_PROMPTS}; got a {prompts.ndim}-d {type(prompts).__name__}")
    if isinstance(prompts, (dict, set)) or not hasattr(prompts, "__iter__"):
        raise TypeError(f"{_PROMPTS}; got {_kind(prompts)}: e.g. [[1, 42, 7]]")
    items = list(prompts)
    if items and all(_is_int(x) for x in items):
        raise TypeError(f"{_PROMPTS}; got a flat list of ints: wrap a single prompt in a list: [ids]")
    return [_token_ids(p, i) for i, p in enumerate(items)]


def check_prompts(prompts: list[list[int]], max_new_tokens: int, vocab: int, context: int | None) -> None:
    """Every prompt non-empty, in the vocabulary, and short enough for the context."""
    if not prompts:
        raise ValueError("no prompts given")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token "
                             "(apply the chat template, or start with the BOS token)")
        if min(p) < 0 or max(p) >= vocab:
            raise ValueError(f"prompt {i} has token ids outside [0, {vocab}): "
                             "was it encoded with the target's tokenizer?")
        if context and len(p) + max_new_tokens > context:
            raise ValueError(f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                             f"target's context of {context}: shorten the prompt or lower max_new_tokens")


def as_eos(eos) -> list[int]:
    """The end-of-sequence token ids as a list of ints (None: no EOS, decode to max_new_tokens)."""
    if eos is None:
        return []
    eos = [eos] if _is_int(eos) else eos
    if isinstance(eos, (str, bytes)) or not hasattr(eos, "__iter__") or not all(_is_int(e) for e in eos):
        raise TypeError(f"eos_token_id must be a token id (an int), a list of them, or None; got {eos!r}: "
                        "pass tokenizer.eos_token_id")
    return [int(e) for e in eos]


def as_policy(arms, n_prompts: int) -> ArmPolicy:
    """The policy to play: `arms` itself when it is one, else FixedArms (one Arm, or one per prompt)."""
    if isinstance(arms, ArmPolicy):
        return arms
    if isinstance(arms, type) and issubclass(arms, ArmPolicy):
        raise TypeError(f"arms is the class {arms.__name__}: pass an instance of it")
    return FixedArms(arms, n_prompts)


def check_pool(drafters) -> dict[str, Drafter]:
    """The pool as {name: drafter}: every name a non-empty str, every drafter a Drafter, and no drafter
    object under two names (a drafter keeps per-row state: two names would share, and clobber, it)."""
    if drafters is None:
        return {}
    if isinstance(drafters, Drafter):
        raise TypeError(f"the pool is one {type(drafters).__name__}: pass a dict {{name: drafter}} (or a list of "
                        f"drafters), e.g. {{'{drafters.name}': drafter}}")
    if not isinstance(drafters, dict):
        if isinstance(drafters, (str, bytes)) or not hasattr(drafters, "__iter__"):
            raise TypeError(f"the pool must be a dict {{name: drafter}} or a list of drafters; got {_kind(drafters)}")
        listed = list(drafters)
        for i, d in enumerate(listed):
            _check_drafter(f"pool[{i}]", d)
        names = [d.name for d in listed]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise DrafterError(f"two drafters of the pool are named '{twice}': pass a dict {{name: drafter}} with "
                               "one name per drafter (and one drafter per name)")
        drafters = {d.name: d for d in listed}
    bad = [n for n in drafters if not isinstance(n, str) or not n]
    if bad:
        raise DrafterError(f"drafter names must be non-empty strings (got {bad[0]!r}): name each drafter, "
                           "e.g. {'ngram': NgramDrafter()}")
    _check_drafters(drafters)
    return drafters


def _check_drafter(where: str, d) -> None:
    if not isinstance(d, Drafter):
        raise TypeError(f"{where} is {_kind(d)}, not a Drafter: build one, e.g. NgramDrafter() or ModelDrafter(model)")


def _check_drafters(drafters: dict) -> None:
    first: dict[int, object] = {}
    for name, d in drafters.items():
        _check_drafter(f"pool entry {name!r}", d)
        if id(d) in first:
            raise DrafterError(f"drafters '{first[id(d)]}' and '{name}' are the same drafter object: build one "
                               "drafter per name (a drafter keeps per-row state)")
        first[id(d)] = name



def _learner_name(policy: ArmPolicy) -> str:
    """What to call a policy in an error: its learner's name (LearnerPolicy("hedgespec", ...)), else its class."""
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) and name else type(policy).__name__


def check_feedback(feedback, policy: ArmPolicy) -> str:
    """The feedback mode: `feedback`, or the policy's when None ("full" for a policy that needs full
    information, else "bandit"); a one-line ValueError for bandit feedback to a full-information learner."""
    if feedback is None:
        return "full" if policy.needs_full_information else "bandit"
    if feedback not in ("bandit", "full"):
        raise ValueError(f"feedback must be 'bandit' or 'full', or None for the policy's mode (got {feedback!r})")
    if policy.needs_full_information and feedback != "full":
        raise ValueError(f"{_learner_name(policy)} needs feedback='full' (it learns from every drafter's "
                         "counterfactual acceptance): pass feedback='full', or leave feedback unset")
    return feedback


def check_query_ids(query_ids, n_prompts: int) -> list:
    """One query id (an int or a str) per prompt, all different; None: the prompts' indices 0..n-1."""
    if query_ids is None:
        return list(range(n_prompts))
    if isinstance(query_ids, (str, bytes, Mapping)) or not hasattr(query_ids, "__iter__"):
        raise TypeError(f"query_ids must be a list of ids (ints or strs), one per prompt; got {_kind(query_ids)}")
    ids = query_ids.tolist() if isinstance(query_ids, (torch.Tensor, np.ndarray)) else list(query_ids)
    if len(ids) != n_prompts:
        raise ValueError(f"got {len(ids)} query_ids for {n_prompts} prompts: pass one id per prompt")
    bad = next((i for i, q in enumerate(ids) if not (_is_int(q) or isinstance(q, str))), None)
    if bad is not None:
        raise TypeError(f"query_ids must be ints or strs (they are written to the records); "
                        f"query_ids[{bad}] is {_kind(ids[bad])}")
    ids = [q if isinstance(q, str) else int(q) for q in ids]
    seen: set = set()
    for q in ids:
        if q in seen:
            raise ValueError(f"query id {q!r} is given twice: query_ids must tell the prompts apart")
        seen.add(q)
    return ids


def check_arrivals(arrivals, max_batch, n: int) -> tuple[list[float], int]:
    """(arrival seconds of each of the n requests, the most that run at once): all at 0 and all at
    once by default; a one-line error for a list of the wrong length, a negative or non-finite
    time, or a cap below 1."""
    if arrivals is None:
        times = [0.0] * n
    else:
        if isinstance(arrivals, (str, bytes)) or not hasattr(arrivals, "__len__"):
            raise TypeError(f"arrivals must be a list of seconds, one per prompt (got {_kind(arrivals)})")
        if len(arrivals) != n:
            raise ValueError(f"arrivals has {len(arrivals)} times for {n} prompts; give one per prompt")
        times = [float(a) for a in arrivals]
        if any(not np.isfinite(a) or a < 0 for a in times):
            raise ValueError("arrivals must be finite seconds >= 0 after the call starts")
    cap = n if max_batch is None else check_int("max_batch", max_batch, 1)
    return times, max(cap, 1)
