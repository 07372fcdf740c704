"""The study's results on disk: OUT/queries.jsonl (ResultStore) and OUT/config.json (write_config).

Every finished batch appends one JSON line per query in a single write followed by fsync; a
torn last line (an interrupted write) is cut off before a resumed study appends, so an
interrupted study loses nothing it finished. config.json records what the results depend on:
a resume with different options (``IDENTITY``) is refused instead of mixing results. OUT/.lock
(``study_lock``) keeps a second process from writing the same study.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from evaluators.lines import complete_lines, done_batches, index_runs
from evaluators.records import read_config, read_records  # noqa: F401  (read_config: the study's reader)
from specsel.core.runs import ROUTER_LEARNERS, STUDY_LEARNERS
from specsel.study.config import StudyError

CONFIG_VERSION = 5      # 3: EAGLE prompt window, FactoredHedge stream prior, in-place KV appends; 4: the EAGLE
                        # family (one forward for a head's experts), per-call batch cost, a 128-pair prompt window;
                        # 5: FactoredHedge cold start, batch caps (eq. 20) and eq. 23, interpolated verify widths
# 2: the joint setting's autoregressive arm and dynamic_gamma row; fullinfo/<setting>/<learner>
# options that must not change between a study and its --resume (they change what a run outputs)
IDENTITY = ("specsel_version", "target", "dtype", "device", "target_fingerprint", "drafters", "weights",
            "max_new_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "gamma", "gammas", "queries",
            "prompts", "score_every", "joint_hedgespec", "user_domains", "router")
# options added later whose value, in an older config.json without them, was this
ADDED_WITH_DEFAULT = {"top_k": 0, "min_p": 0.0}
# recorded by newer studies only: a config.json without one (older) resumes unchecked on it
RECORDED_LATER = ("dtype", "device", "prompts", "specsel_version", "target_fingerprint")
# what each option is called and the flag that sets it, in a refused resume's message (else: the key, --KEY)
DESCRIBED = {"queries": ("query stream", "--domains, --limit, --skip, --split, --seed and --data-dir"),
             "weights": ("set of drafter weights (retrained or another --pool)", "--pool and drafter weights"),
             "drafters": ("drafter set", "--drafters and --pool"),
             "router": ("router (--router: another folder, or refitted)", "--router"),
             "specsel_version": ("specsel version", "specsel version (install the one it was run with)"),
             "target_fingerprint": ("target model (its config or weights changed; fingerprint)",
                                    "--target and the same model files")}
# short values: the message says "old -> new" (a target fingerprint is 16 hex digits)
SHOWN = ("specsel_version", "target_fingerprint", "target", "dtype", "device", "drafters", "max_new_tokens",
         "temperature", "top_p", "top_k", "min_p", "seed", "gamma", "gammas", "score_every", "joint_hedgespec")


class ResultStore:
    """OUT/queries.jsonl: one JSON line per finished query, appended a batch at a time.

    A study split across processes (specsel.study.ranks) gives each rank its own shard,
    queries.rank{r}.jsonl next to `path`, with the same append/fsync/torn-tail rules; every
    reader sees `path` and all shards, so a resume skips what any rank finished, and `merge`
    folds the shards into `path` at the end."""

    def __init__(self, path: str | Path, resume: bool, rank: int | None = None):
        self.path = Path(path)
        self.own = self.path if rank is None else self.path.with_name(f"{self.path.stem}.rank{rank}.jsonl")
        self.lines: list[dict] = []
        if any(f.stat().st_size > 0 for f in self.files()):
            if not resume:
                raise StudyError(holds_results(self.path.parent))
            self._cut_torn_tail()
            self.refresh()
        self.done = done_batches(self.lines)

    def files(self) -> list[Path]:
        """`path` and every shard beside it (existing ones)."""
        shards = sorted(self.path.parent.glob(f"{self.path.stem}.rank*.jsonl"))
        return [f for f in [self.path, *shards] if f.is_file()]

    def refresh(self) -> None:
        """Read every file again (what the other ranks wrote since)."""
        self.lines = [line for f in self.files() for line in read_records(f)]
        self.done = done_batches(self.lines)

    def merge(self) -> None:
        """Fold the shards into `path` (complete batches, one line per query and run) and remove
        them; the new file replaces the old one in one rename, so a kill leaves one or the other."""
        shards = [f for f in self.files() if f != self.path]
        if not shards:
            return
        self.refresh()
        self.lines = complete_lines(self.lines)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            f.write("".join(json.dumps(l) + "\n" for l in self.lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        for shard in shards:
            shard.unlink()
        self.own = self.path

    def _cut_torn_tail(self) -> None:
        """An interrupted write may leave a partial last line: cut it so appends start on a fresh line."""
        if not self.own.is_file():
            return
        data = self.own.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.own.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, lines: list[dict]) -> None:
        text = "".join(json.dumps(l) + "\n" for l in lines)
        self.own.parent.mkdir(parents=True, exist_ok=True)
        with self.own.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.lines.extend(lines)
        if lines:
            self.done.add((lines[0]["run"], lines[0]["bsz"], lines[0]["batch"]))

    def run_lines(self, run: str, bsz: int) -> list[dict]:
        """The query lines of one run at one batch size (complete batches, latest write wins)."""
        lines = (l for l in self.lines if l["run"] == run and l["bsz"] == bsz)
        return list(index_runs(lines).get((run, bsz), {}).values())


@contextmanager
def study_lock(out: Path, name: str = ".lock"):
    """Hold an exclusive lock on OUT/.lock while a study writes OUT; a second holder (another
    process, or another open of the file in this one) is refused in one line. The kernel drops
    the lock when its process dies, so a .lock file left by a killed study does not block; the
    pid written into it only names the holder in the message."""
    try:
        import fcntl
    except ImportError:                         # no flock (Windows): unguarded, as before
        yield
        return
    path = out / name
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "unknown"
            raise StudyError(f"{out} is being written by another specsel process (pid {pid}, see {path}); wait "
                             "for it or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()                        # released: no pid names a holder any more
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


def holds_results(out: Path) -> str:
    return f"{out} already holds results (queries.jsonl); pass --resume to continue them, or choose another --out"


def check_out(out: str | Path, resume: bool, lock: bool = True) -> bool:
    """Refuse an --out that is a file (or lies under one), that another study is writing (OUT/.lock
    held), or that holds results without --resume; cheap, so the command line checks it before the
    model loads. True when OUT holds results."""
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            where = "" if folder == out else f" lies under {folder}, which"
            raise StudyError(f"--out {out}{where} is a file; pass a folder")
    if lock and (out / ".lock").is_file():
        with study_lock(out):                   # another process writing OUT: say so now, not after the load
            pass
    held = any(f.stat().st_size > 0 for f in [out / "queries.jsonl", *out.glob("queries.rank*.jsonl")] if f.is_file())
    if held and not resume:
        raise StudyError(holds_results(out))
    return held


def identity(config: dict, key: str):
    """What must not change on --resume. A user domain's file counts by its content (sha256), so
    it may move, but not change; a hub split by its name. "queries" is the stream (ids, domains,
    order), "prompts" each query's prompt token ids (their hash, {qid: hash}; None when not recorded)."""
    value = config.get(key, ADDED_WITH_DEFAULT.get(key))
    if key == "user_domains" and value:
        return {name: rec.get("sha256") or rec.get("hub") for name, rec in value.items()}
    if key == "router":                         # a router counts by its weights, wherever it lies
        return value.get("sha256") if isinstance(value, dict) else None
    if key == "queries" and value is not None:
        return [{k: v for k, v in q.items() if k != "prompt_hash"} for q in value]
    if key == "prompts":
        queries = config.get("queries") or []
        if not queries or any("prompt_hash" not in q for q in queries):
            return None
        return {q["qid"]: q["prompt_hash"] for q in queries}
    return value


def changed_user_data(old: dict, config: dict) -> str:
    before, now = identity(old, "user_domains") or {}, identity(config, "user_domains") or {}
    names = [n for n in {**before, **now} if before.get(n) != now.get(n)]
    return f"file for user domain {', '.join(names)} (its content changed since)"


def refused_resume(out: Path, key: str, old: dict, config: dict) -> str:
    """The one-line message of a resume refused because option `key` changed: what changed, and the fix."""
    before, now = identity(old, key), identity(config, key)
    if key == "user_domains":
        what, flag = changed_user_data(old, config), "file"
    elif key == "prompts":
        qid = next((q for q in now if before.get(q) != now[q]), "?")
        what, flag = f"prompt for query {qid} (the data or the tokenizer changed since)", "data and target"
    else:
        what, flag = DESCRIBED.get(key, (key, "--" + key.replace("_", "-")))
    change = f": {before} -> {now}" if key in SHOWN else ""
    return f"{out} was run with a different {what}{change}; --resume needs the same {flag} (or choose another --out)"


def write_config(out: Path, config: dict, resume: bool) -> None:
    """Write OUT/config.json atomically. On resume, refuse other IDENTITY options; settings,
    learners and batch sizes may grow (the union is kept)."""
    path = out / "config.json"
    if resume and path.exists():
        old = read_config(out)
        if old.get("version") != config["version"]:
            raise StudyError(f"{out} holds results of another specsel version (study format {old.get('version')}, "
                             f"now {config['version']}); rerun into a new --out")
        for key in IDENTITY:
            before, now = identity(old, key), identity(config, key)
            if key in RECORDED_LATER and (before is None or now is None):
                continue                        # not recorded then (or now): unknown, not checked
            if before != now:
                raise StudyError(refused_resume(out, key, old, config))
        config["bsz"] = sorted(set(old.get("bsz", [])) | set(config["bsz"]))
        learners = set(old.get("learners", [])) | set(config["learners"])
        config["learners"] = [l for l in STUDY_LEARNERS + ROUTER_LEARNERS if l in learners]
        config["settings"] = {**old.get("settings", {}), **config["settings"]}
    tmp = path.with_name("config.json.tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n")
    os.replace(tmp, path)
