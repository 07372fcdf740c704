"""Every command-line flag shared by specsel's commands and recipes, declared once.

    ap = flag_parser("bench_joint", __doc__)
    add_flags(ap, "target", "data_dir", "threads", "limit", limit=10)   # a recipe may change a default
    args = parse_flags(ap, argv)          # argparse, then every number checked (specsel.options)

A flag's name is its argparse dest (``max_new_tokens`` for ``--max-new-tokens``); `FLAGS` gives its
kind, default and help. The numbers' accepted ranges are `specsel.options.BOUNDS`, checked by
`parse_flags` for every command alike, so a new option (the next sampling warp, say) is one entry
here and one there. Comma lists ("ints", "names") stay text in the parsed namespace and are read
with `specsel.options.parse_ints` / `parse_csv`, so their refusals name the flag.

`run_command(main, prog)` is the one error path of every recipe: our errors are one line that
names the fix (exit 2), Ctrl-C is one line (exit 130), never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from specsel.core.defaults import EMBEDDED_DEFAULT
from specsel.core.runs import STUDY_LEARNERS
from specsel.options import OneLineParser, OptionError, check_args, read_number

KINDS = ("int", "float", "text", "ints", "names", "switch", "choice")


@dataclass(frozen=True)
class Flag:
    """One flag: `kind` says how argparse reads it ("ints" and "names" are comma lists kept as text,
    "switch" is on when given, "choice" one of `choices`); `default` is used unless a command or
    recipe gives its own."""
    name: str
    kind: str
    default: object = None
    help: str | None = None
    choices: tuple = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def text(self, default):
        """A comma-list default as argparse shows and parses it ("1,2,4")."""
        if self.kind in ("ints", "names") and isinstance(default, (list, tuple)):
            return ",".join(str(v) for v in default)
        return default


def _lazy_help(name: str) -> str | None:
    """Help texts that live with their subject (imported only when a parser is built)."""
    if name == "domains":
        from specsel.data.user_domain import DOMAIN_SPEC_HELP
        return DOMAIN_SPEC_HELP + "; PATH is not under --data-dir (README, 'Your own data')"
    if name == "device_map":
        from specsel.modeling.device_map import DEVICE_MAP_HELP
        return DEVICE_MAP_HELP + "; with torchrun, one process per node"
    return None


FLAGS = {f.name: f for f in (
    # what to load
    Flag("target", "text", EMBEDDED_DEFAULT, "local dir, hub id, or the embedded default"),
    Flag("dtype", "text", None, "float32, bfloat16, float16 (default: by device)"),
    Flag("device", "text", None, "cpu or cuda (default: cuda when visible)"),
    Flag("device_map", "text", None),
    Flag("threads", "int", None, "torch CPU threads (default: torch's)"),
    Flag("pool", "text", None, "Python file defining build_pool(target), default drafters.pool (the file is "
                               "executed as Python: only pass files you trust)"),
    Flag("drafters", "text", None, "comma list of pool drafters (default: the whole pool)"),
    # the data
    Flag("data_dir", "text", None, "folder laid out like shared/data (default: hub data sets)"),
    Flag("domains", "text", "math,humaneval,medqa"),
    Flag("limit", "int", 3, "queries per domain (the first N of each split, after --skip)"),
    Flag("skip", "int", 0, "leave out the first N queries of each domain (e.g. the range another study "
                           "evaluates)"),
    Flag("split", "choice", "eval", "which split of each domain: eval (held-out benchmark, default) or train (the "
                                    "drafters' training split, e.g. to fit a router)", choices=("eval", "train")),
    Flag("prompts", "int", 8, "prompts per domain"),
    # decoding
    Flag("gamma", "int", 4, "speculation length (draft tokens per round); the drafter setting's"),
    Flag("gammas", "ints", (1, 2, 4), "speculation lengths of the joint setting"),
    Flag("bsz", "ints", (4,), "comma list of batch sizes"),
    Flag("max_new_tokens", "int", 64, "new tokens per query"),
    Flag("temperature", "float", 0.0, "0 = greedy (default); > 0 samples"),
    Flag("top_p", "float", 1.0, "sampling: nucleus mass kept (1 = off)"),
    Flag("top_k", "int", 0, "sampling: most likely tokens kept (0 = off; Hugging Face's generate applies 50 "
                            "unless the model's generation_config says otherwise)"),
    Flag("min_p", "float", 0.0, "sampling: drop tokens below min-p x the top probability (0 = off)"),
    Flag("seed", "int", 0, "stream order, learner seeds, sampling seeds"),
    Flag("score_every", "int", 1, "full information, greedy: EAGLE heads score the committed tokens of this many "
                                  "rounds in one forward; the learner hears of them then, which cost HedgeSpec "
                                  "about 4%% of its accepted tokens at 3 (default 1: every round)"),
    # the study
    Flag("settings", "names", ("drafter", "joint"), "drafter (drafters at --gamma, accepted length) and/or joint "
                                                    "(drafters x --gammas, tokens/s)"),
    Flag("learners", "names", STUDY_LEARNERS, f"comma list of {', '.join(STUDY_LEARNERS)}"),
    Flag("fixed_candidates", "int", 2, "joint setting: fixed arms run live, the best by the full-information "
                                       "estimate (0 = every arm, both settings)"),
    Flag("repeats", "int", 1, "decode every timed run this many times, interleaved batch by batch; speed ratios "
                              "are the median over batches and repeats, with their spread"),
    Flag("joint_hedgespec", "text", "factored", "the joint setting's HedgeSpec: factored (HedgeSpec over "
                                                  "drafters, gamma and the autoregressive arm by expected batch "
                                                  "throughput) or arms (one learner over every drafter x gamma arm)"),
    Flag("router", "text", "", "a prompt router: a folder written by `specsel router fit`, or 'default' (the one "
                               "shipped for the default pool); adds the rows router and router_hedgespec"),
    # load: requests over time (specsel load)
    Flag("concurrency", "ints", (1, 2, 4, 8, 16), "closed-loop loads: requests in flight (a new one as soon as one "
                                                  "ends)"),
    Flag("max_batch", "int", 64, "at most this many requests decode at once"),
    # drafter training (recipes/train_*.py, recipes/self_distill.py)
    Flag("domain", "text", None, "one domain (its training split), or your own data as NAME=PATH[@N]"),
    Flag("base", "text", None, "directory of the base EAGLE head (recipes/train_eagle.py --out)"),
    Flag("self_distill_prompts", "int", 300, "per domain: training prompts the target answers itself (greedy), "
                                             "trained on too"),
    Flag("self_distill_tokens", "int", 128, "answer length of the self-distilled answers"),
    Flag("self_distill_repeat", "int", 2, "oversample the self-distilled rows this many times"),
    Flag("corpus_docs", "int", None, "at most this many self-distilled answers per domain (default: all)"),
    Flag("seq_len", "int", 512, "training row length in tokens"),
    Flag("steps", "int", 700, "optimiser steps"),
    Flag("batch_size", "int", 4, "rows per step (generation: prompts per batch)"),
    Flag("lr", "float", 1e-3, "learning rate"),
    Flag("unroll_weight", "float", 0.5, "weight of the second, unrolled draft step in the loss (training-time "
                                        "test; 0: off)"),
    Flag("ttt_steps", "int", 3, "EAGLE-3: unrolled draft steps of the training-time test"),
    Flag("ttt_decay", "float", 0.8, "EAGLE-3: loss weight of step k is decay^(k-1)"),
    Flag("rank", "int", 8, "LoRA rank"),
    Flag("alpha", "int", 16, "LoRA alpha"),
    Flag("save_every", "int", 25, "checkpoint every this many steps (a rerun resumes from the last)"),
    Flag("work", "text", None, "features, corpus and checkpoints (default: ~/.cache/specsel/train/<target>)"),
    Flag("eval_prompts", "int", 5, "held-out eval prompts per domain for the model card"),
    # where results go
    Flag("out", "text", "results", "output folder"),
    Flag("json", "text", None, "also write the headline ratios (medians) to this JSON file"),
    Flag("resume", "switch", False, "continue the run in --out, skipping finished batches"),
    Flag("no_progress", "switch", False, "hide the progress bars"),
    # offline work on records
    Flag("records", "text", None, "queries.jsonl of `specsel eval`, or a round-records JSONL"),
    Flag("folds", "int", 5, "cross-validation folds for the reported accuracy"),
    Flag("discounts", "text", "1,0.95,0.9,0.8,0.7,0.5", "comma list of HedgeSpec regret discounts in (0, 1]"),
)}
assert all(f.kind in KINDS for f in FLAGS.values())


def flag_parser(prog: str, doc: str | None = None) -> OneLineParser:
    """A parser whose refusals are one line (specsel.options.OneLineParser); `doc`'s first line describes it."""
    return OneLineParser(prog=prog, description=(doc or "").strip().split("\n")[0] or None)


def add_flags(ap: argparse.ArgumentParser, *names: str, required: tuple[str, ...] = (), **defaults) -> None:
    """Add the flags `names` to `ap`; `defaults` replaces a flag's default (a recipe's own choice), and
    the flags named in `required` must be given."""
    unknown = [n for n in (*names, *defaults) if n not in FLAGS]
    if unknown:
        raise KeyError(f"no shared flag {', '.join(unknown)}; declare it in specsel.flags.FLAGS")
    for name in names:
        f = FLAGS[name]
        default = defaults.get(name, f.default)
        helptext = f.help if f.help is not None else _lazy_help(name)
        if f.kind == "switch":
            ap.add_argument(f.option, action="store_true", help=helptext)
            continue
        kw = {"choices": f.choices} if f.kind == "choice" else {}
        if name in required:
            kw["required"] = True
        ap.add_argument(f.option, default=f.text(default), help=helptext, **kw)   # numbers: read_flags reads them


def read_flags(args: argparse.Namespace, error: type[ValueError] = OptionError) -> argparse.Namespace:
    """Read the numbers of a parsed command line (argparse keeps them as text, so a bad one is refused
    here, in the same words as every other bad number) and check every value against
    specsel.options.BOUNDS; `error` is raised with one line naming the flag and the fix."""
    for name, value in vars(args).items():
        f = FLAGS.get(name)
        if f is not None and f.kind in ("int", "float") and isinstance(value, str):
            setattr(args, name, read_number(value, name, f.kind == "int", error))
    check_args(args, error)
    return args


def one_int(args: argparse.Namespace, name: str, error: type[ValueError] = OptionError) -> int | None:
    """The single integer of a comma-list flag where a command takes one (e.g. `specsel replay --bsz`),
    None when not given."""
    value = getattr(args, name)
    if value is None or isinstance(value, int):
        return value
    items = [int(v) for v in str(value).split(",") if v.strip()]     # read_flags checked them
    if len(items) != 1:
        raise error(f"{FLAGS[name].option} takes one value here (got {value!r})")
    return items[0]


def parse_flags(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, read the numbers and check them (read_flags)."""
    return read_flags(ap.parse_args(argv))


def run_command(main: Callable[[], int], prog: str) -> int:
    """Run a command's main with the one error path: ValueError and OSError (our errors name the
    fix) print one line and return 2; Ctrl-C prints one line and returns 130."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        text = str(exc).strip()
        print(f"{prog}: error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2
