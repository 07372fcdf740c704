"""The seed formulas, written once: live runs, resumed runs and offline replays of the same
query or batch must draw the same numbers."""

MAX_SEED = 2**64 - 1            # torch.Generator.manual_seed takes seeds up to this

_QUERY_STRIDE = 1_000_003
_BATCH_STRIDE = 10_007


def query_seed(seed: int, query: int) -> int:
    """Seed of query number `query` of a stream (its per-query learner, its Monte-Carlo replay)."""
    return seed * _QUERY_STRIDE + query


def batch_seed(seed: int, bsz: int, batch: int) -> int:
    """Sampling seed of batch number `batch` of a study decoded at batch size `bsz`."""
    return seed * _QUERY_STRIDE + bsz * _BATCH_STRIDE + batch


def position_seed(seed: int, position: int) -> int:
    """Seed of the noise that picks the `position`-th generated token of a request sampled with its
    own `seed` (specsel.engine.verify.seeded_choice): the same token whatever drafted it."""
    return (seed * _QUERY_STRIDE + position) % MAX_SEED
