"""Fitting a prompt router on a study's full-information records (``specsel router fit``).

A full-information run's records give every arm's cost on every query (specsel.replay.fullinfo:
target rounds in the drafter setting, estimated time in the joint setting), so the best arm of
each query is known in hindsight. The router (specsel.router) learns it from the query's user
text. The texts are read again from the data the study loaded (config.json's ``data``: data
dir, domains, split), so the records stay as they are.

Honest protocol: fit on queries the evaluation never uses, e.g. the training splits
(``specsel router collect --split train``) or eval queries past the study's range (``--skip``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from evaluators.lines import index_runs
from evaluators.records import read_records
from specsel.core.costs import setting_cost
from specsel.replay.fullinfo import FullInfo, SettingEval
from specsel.study.config import StudyConfig, StudyError
from specsel.study.store import read_config

ROUTER_SETTINGS = ("drafter", "joint")


def config_of(records: Path) -> dict:
    if not records.is_file():
        raise StudyError(f"--records {records}: no such file; pass the queries.jsonl of a study")
    config = read_config(records.parent)
    if config is None:
        raise StudyError(f"--records {records}: no config.json beside it; pass the queries.jsonl of a "
                         "`specsel eval` or `specsel router collect` folder")
    return config


def fullinfo_of(records: Path, config: dict, bsz: int | None = None) -> FullInfo:
    """The study's full-information run (at `bsz`, default its first batch size) as FullInfo."""
    bsz = config["bsz"][0] if bsz is None else bsz
    run = index_runs(read_records(records)).get((config["fullinfo_run"], bsz))
    if not run:
        raise StudyError(f"--records {records}: no finished batch of the full-information run "
                         f"{config['fullinfo_run']} at bsz {bsz}; run (or --resume) the study first")
    return FullInfo(run.values(), config["drafters"], config.get("seed", 0), config.get("replay_exact"))


def setting_arms(config: dict, setting: str) -> list[str]:
    """The arms of `setting` for the study's drafters, gamma and gammas (every setting, whichever
    the study ran: one full-information run costs both)."""
    if setting in config.get("settings", {}):
        return list(config["settings"][setting]["arms"])
    cfg = StudyConfig(gamma=config["gamma"], gammas=config["gammas"])
    return cfg.arms(setting, config["drafters"])


def query_texts(config: dict, qids: Sequence[str], data_dir: str | None = None) -> list[str]:
    """Each query's user text, read again from the study's data (config.json's ``data``;
    `data_dir` overrides its folder)."""
    from specsel.data import load_domain, resolve_domain, user_domain_records

    data = config.get("data") or {}
    folder = data_dir if data_dir is not None else data.get("data_dir")
    split = data.get("split", "eval")
    for name, rec in (config.get("user_domains") or {}).items():     # the study's own files, unchanged
        where = rec["path"] if rec.get("path") else f"hf:{rec['hub']}"
        resolve_domain(f"{name}={where}@{rec['eval_size']}")
        if rec.get("path") and user_domain_records([name])[name]["sha256"] != rec.get("sha256"):
            raise StudyError(f"{rec['path']} (user domain {name}) changed since the study ran; its records are "
                             "of the old prompts: run `specsel router collect` again")
    domains = {q["qid"]: q["domain"] for q in config["queries"]}
    texts: dict[str, str] = {}
    for domain in dict.fromkeys(domains[q] for q in qids):
        texts.update({q.qid: q.user_text for q in load_domain(domain, folder, split=split)})
    missing = [q for q in qids if q not in texts]
    if missing:
        raise StudyError(f"{len(missing)} queries of the records (e.g. {missing[0]}) are not in the {split} split "
                         f"of {folder or 'the hub data'}; pass the --data-dir the study used")
    return [texts[q] for q in qids]


def router_data(records: Sequence[Path], data_dir: str | None = None, bsz: int | None = None) -> dict:
    """{setting: (texts, costs [n, arms], arms)} over every records file (same pool and arms)."""
    out: dict[str, tuple[list[str], list[np.ndarray], list[str]]] = {}
    for path in records:
        config = config_of(path)
        fi = fullinfo_of(path, config, bsz)
        texts = query_texts(config, fi.qids, data_dir)
        for setting in ROUTER_SETTINGS:
            arms = setting_arms(config, setting)
            ev = SettingEval(fi, arms, setting_cost(setting, fi.lines))
            if setting in out and out[setting][2] != arms:
                raise StudyError(f"--records {path}: its {setting} arms ({', '.join(arms)}) differ from the other "
                                 f"files' ({', '.join(out[setting][2])}); fit one router per pool")
            t, c, _ = out.setdefault(setting, ([], [], arms))
            t.extend(texts)
            c.append(ev.costs)
    return {s: (t, np.concatenate(c), arms) for s, (t, c, arms) in out.items()}


@dataclass
class RouterFit:
    """How fit_router fits: cross-validation folds, the logistic regression's inverse L2 strength `C`,
    the seed, the command recorded in router.json, and where progress lines go."""
    folds: int = 5
    C: float = 1.0
    seed: int = 0
    command: str = ""
    log: Callable[[str], None] = print


def fit_router(records: Sequence[str], out: str, data_dir: str | None = None, bsz: int | None = None,
               **options) -> dict:
    """Cross-validate, fit and save a router per setting (`options`: RouterFit's); returns {setting: cv metrics}."""
    from specsel.router import RouterError, RouterModel, cross_validate, save_routers

    o = RouterFit(**options)
    folds, C, seed, command, log = o.folds, o.C, o.seed, o.command, o.log
    paths = [Path(r).expanduser() for r in records]
    data = router_data(paths, data_dir, bsz)
    models, metrics = {}, {}
    try:
        for setting, (texts, costs, arms) in data.items():
            metrics[setting] = cross_validate(texts, costs, arms, folds=folds, C=C, seed=seed)
            models[setting] = RouterModel.fit(texts, costs, arms, setting, C=C, seed=seed,
                                              info={"cv": metrics[setting]})
        meta = {"records": [str(p) for p in paths], "queries": len(next(iter(data.values()))[0]),
                "folds": folds, "C": C, "seed": seed, "command": command}
        save_routers(out, models, meta)
    except RouterError as exc:
        raise StudyError(str(exc)) from None
    for line in metrics_table(metrics):
        log(line)
    log(f"router saved in {out}/ (router.json, router.safetensors); use it with specsel eval --router {out}")
    return metrics


def metrics_table(metrics: dict) -> list[str]:
    """Cross-validated accuracy and regret of routing against the majority class and the best fixed arm."""
    head = (f"{'setting':<8} {'queries':>7} {'accuracy':>8} {'majority':>8} {'regret':>8} {'majority':>8} "
            f"{'best fixed':>10}  (regret: mean per query of cost - oracle cost)")
    lines = [head, "-" * len(head)]
    for setting, m in metrics.items():
        lines.append(f"{setting:<8} {m['n']:>7} {m['accuracy']:>8.3f} {m['majority_accuracy']:>8.3f} "
                     f"{m['routing_regret']:>8.3f} {m['majority_regret']:>8.3f} {m['best_fixed_regret']:>10.3f}")
    return lines
