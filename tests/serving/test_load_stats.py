"""The load test's server statistics: Triton answers a request before it counts it, so the
numbers are read once the server has counted every answered request (bounded wait)."""
from __future__ import annotations

from deploy.serving import load


class _Client:
    """get_inference_statistics as Triton returns it; the success count catches up one read late."""

    def __init__(self, counts):
        self.counts = list(counts)
        self.reads = 0

    def get_inference_statistics(self, model):
        n = self.counts[min(self.reads, len(self.counts) - 1)]
        self.reads += 1
        return {"model_stats": [{"inference_stats": {"success": {"count": n, "ns": 1000 * n}},
                                 "execution_count": n, "inference_count": n}]}


class _Clients:
    def __init__(self, client):
        self.client = client

    def get(self):
        return self.client


class _Runner:
    def __init__(self, client):
        self.clients = _Clients(client)


def _before():
    return {"m": {"inference_stats": {"success": {"count": 0, "ns": 0}}}}


def test_statistics_are_read_again_until_every_answer_is_counted():
    client = _Client([1598, 1598, 1600])
    after = load._settled_stats(_Runner(client), ["m"], _before(), answered=1600)
    assert load.stats_delta(_before()["m"], after["m"])["requests"] == 1600 and client.reads == 3


def test_a_server_that_never_counts_them_is_read_for_a_bounded_time():
    client = _Client([5])
    after = load._settled_stats(_Runner(client), ["m"], _before(), answered=10, wait_s=0.1)
    assert load.stats_delta(_before()["m"], after["m"])["requests"] == 5 and 2 <= client.reads <= 20
