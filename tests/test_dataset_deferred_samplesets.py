"""Remote annealers (QPU, hybrid) return SampleSets that resolve later: a batch should be submitted before any
result is awaited, so solving overlaps the network latency. Tested offline with a sampler whose SampleSets come
from ``dimod.SampleSet.from_future``: each problem is solved exactly by dimod's ExactSolver after a delay."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dimod
import pytest

from captum_qubo.integrations.dataset import BatchExplainer, DigitsSource, ExplainSettings
from dataset_helpers import SETTINGS

LATENCY = 0.25
BATCH = 8


class DeferredExactSampler(dimod.Sampler):
    """A remote-like sampler: ``sample`` returns at once; the exact answer arrives ``latency`` seconds later.

    Records ``("submit", t)`` when a problem is sent and ``("resolve", t)`` when a result is first awaited.
    """

    parameters = {}
    properties = {}

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.events = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=BATCH)

    def _record(self, kind):
        with self._lock:
            self.events.append((kind, time.perf_counter()))

    def _solve(self, bqm):
        time.sleep(self.latency)  # the round trip to the annealer
        return dimod.ExactSolver().sample(bqm)

    def _resolved(self, future):
        self._record("resolve")
        return future.result()

    def sample(self, bqm, **parameters):
        self._record("submit")
        return dimod.SampleSet.from_future(self._pool.submit(self._solve, bqm), self._resolved)


@pytest.fixture(scope="module")
def batch():
    source = DigitsSource(limit=BATCH)
    items = [source[i] for i in range(BATCH)]
    import torch

    return torch.stack([item["image"] for item in items]), torch.tensor([item["label"] for item in items])


def deferred_run(digits_model, batch):
    sampler = DeferredExactSampler(LATENCY)
    settings = ExplainSettings(layer="reduce", methods=("qubo",),
                               options=SETTINGS.options.replace(sampler=sampler))
    start = time.perf_counter()
    columns, _ = BatchExplainer(digits_model, settings).explain(*batch)
    return columns, sampler.events, time.perf_counter() - start


def test_deferred_samplesets_give_the_exact_selections(digits_model, batch):
    columns, events, _ = deferred_run(digits_model, batch)
    exact, _ = BatchExplainer(digits_model, ExplainSettings(layer="reduce", methods=("qubo",),
                                                            options=SETTINGS.options)).explain(*batch)
    assert [c.tolist() for c in columns["qubo_channels"]] == [c.tolist() for c in exact["qubo_channels"]]
    assert columns["qubo_energy"] == pytest.approx(exact["qubo_energy"], rel=1e-9)
    assert sum(kind == "submit" for kind, _ in events) == sum(d > 0 for d in exact["qubo_num_variables"])


def test_a_batch_is_submitted_before_any_result_is_awaited(digits_model, batch):
    _, events, seconds = deferred_run(digits_model, batch)
    kinds = [kind for kind, _ in sorted(events, key=lambda event: event[1])]
    submitted = kinds.count("submit")
    assert kinds[:submitted] == ["submit"] * submitted  # every problem out before the first wait ...
    assert seconds < 0.5 * submitted * LATENCY  # ... so the latencies overlap instead of adding up
