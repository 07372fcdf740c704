"""The server's Prometheus metrics (prometheus-client, one registry per server).

Names follow vLLM's where it has them, under the `specsel:` namespace instead of `vllm:`
(spec_decode_num_drafts, spec_decode_num_draft_tokens, spec_decode_num_accepted_tokens,
spec_decode_num_accepted_tokens_per_pos, num_requests_running/waiting, time_to_first_token_seconds,
e2e_request_latency_seconds, prompt_tokens, generation_tokens). Two have no engine counterpart:
how often each arm was chosen, and every drafter's counterfactual acceptance (the share of
committed positions it would have drafted right, from full-information scoring)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from specsel.core.records import RoundRecord

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServerMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.drafts = Counter("specsel:spec_decode_num_drafts", "Rounds in which a row drafted", registry=r)
        self.draft_tokens = Counter("specsel:spec_decode_num_draft_tokens", "Draft tokens verified", registry=r)
        self.accepted = Counter("specsel:spec_decode_num_accepted_tokens", "Draft tokens accepted", registry=r)
        self.accepted_pos = Counter("specsel:spec_decode_num_accepted_tokens_per_pos",
                                    "Draft tokens accepted, by draft position", ["position"], registry=r)
        self.choices = Counter("specsel:arm_choices", "Row rounds played with each arm", ["drafter", "gamma"],
                               registry=r)
        self.counterfactual = Gauge("specsel:counterfactual_acceptance",
                                    "Share of committed positions each drafter would have drafted right "
                                    "(full-information scoring)", ["drafter"], registry=r)
        self.running = Gauge("specsel:num_requests_running", "Requests in the running batch", registry=r)
        self.waiting = Gauge("specsel:num_requests_waiting", "Requests waiting for a row", registry=r)
        self.ttft = Histogram("specsel:time_to_first_token_seconds", "Time to first token", registry=r,
                              buckets=LATENCY_BUCKETS)
        self.e2e = Histogram("specsel:e2e_request_latency_seconds", "End-to-end request latency", registry=r,
                             buckets=LATENCY_BUCKETS)
        self.prompt_tokens = Counter("specsel:prompt_tokens", "Prompt tokens admitted", registry=r)
        self.generation_tokens = Counter("specsel:generation_tokens", "Tokens generated", registry=r)
        self.requests = Counter("specsel:request_success", "Requests finished, by why", ["finished_reason"],
                                registry=r)
        self._scores: dict[str, list[float]] = {}          # drafter -> [accepted positions, positions]

    def round(self, records: list[RoundRecord]) -> None:
        """One engine round's records (on the engine thread)."""
        for rec in records:
            self.choices.labels(rec.drafter or "none", str(rec.gamma)).inc()
            self.generation_tokens.inc(rec.committed)
            if rec.drafted:
                self.drafts.inc()
                self.draft_tokens.inc(rec.drafted)
                self.accepted.inc(rec.accepted)
                for pos in range(rec.accepted):
                    self.accepted_pos.labels(str(pos)).inc()
            for drafter, hits in (rec.position_acceptance or {}).items():
                s = self._scores.setdefault(drafter, [0.0, 0.0])
                s[0] += float(sum(hits))
                s[1] += len(hits)
                if s[1]:
                    self.counterfactual.labels(drafter).set(s[0] / s[1])

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
