"""What a server has learnt, kept across restarts, in JSON (never pickle).

A policy's state is what it learnt from the requests it served: each policy restores itself from
their round records (ArmPolicy.restore: a step-cost model re-learns the rounds, a stream prior its
queries) and seeks past them (ArmPolicy.seek: the next request is the stream's next query, seeded
as such). So the state file holds the records of the last `keep` requests, the number of requests
served, and what they were served with: a file written for another target, pool or policy is
refused in one line. It is written atomically (a temporary file, then a rename)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundRecord

FORMAT = "specsel-serve-state/1"


class StateError(ValueError):
    """A state file that cannot be restored here (one line, naming the fix)."""


@dataclass
class ServerState:
    target: str
    pool: list[str]
    policy: str
    seed: int
    queries: int = 0                                        # requests served (the stream position)
    requests: list[list[dict]] = field(default_factory=list)   # the last ones' round records, in order of ending
    keep: int = 2000
    offset: float = 0.0         # this session's round times start after the stored ones (restore orders by them)

    def add(self, records: list[RoundRecord]) -> None:
        self.queries += 1
        self.requests.append([{**asdict(r), "time_s": None if r.time_s is None else r.time_s + self.offset}
                              for r in records])
        if len(self.requests) > self.keep:
            del self.requests[: len(self.requests) - self.keep]

    def restore(self, policy: ArmPolicy) -> None:
        """Teach `policy` what this state holds: its rounds, then the stream position."""
        if self.requests:
            policy.restore([[[RoundRecord.from_dict(r) for r in recs] for recs in self.requests]])
        policy.seek(self.queries)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        body = {"format": FORMAT, "target": self.target, "pool": self.pool, "policy": self.policy, "seed": self.seed,
                "queries": self.queries, "requests": self.requests}
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, expect: "ServerState") -> "ServerState":
        """The state in `path` (a fresh one like `expect` if there is none); a StateError if it was
        written by another format, target, pool, policy or seed."""
        path = Path(path)
        if not path.exists():
            return expect
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StateError(f"--state {path}: not a specsel state file ({type(e).__name__}); "
                             "move it away or pass another --state") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise StateError(f"--state {path}: not a {FORMAT} file; move it away or pass another --state")
        for key in ("target", "pool", "policy", "seed"):
            if body.get(key) != getattr(expect, key):
                raise StateError(f"--state {path} was written for {key} {body.get(key)!r}, this server has "
                                 f"{getattr(expect, key)!r}; pass another --state (or start afresh without it)")
        requests = list(body.get("requests", []))
        last = max((r.get("time_s") or 0.0 for recs in requests for r in recs), default=0.0)
        return cls(expect.target, expect.pool, expect.policy, expect.seed, int(body.get("queries", 0)), requests,
                   expect.keep, last + 1.0)
