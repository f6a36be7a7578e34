"""The worker's replay memory and its queue of scans waiting for the store stay within their bounds."""

from __future__ import annotations

from gateway.metrics import Metrics
from gateway.scan.outage import OutageMemory


def test_a_code_is_remembered_where_it_was_first_shown_until_it_expires() -> None:
    memory: OutageMemory[int] = OutageMemory(max_codes=1000, max_pending=100, metrics=Metrics())
    assert memory.first_place("k1", "place-a", 300) is None
    assert memory.first_place("k1", "place-b", 300) == "place-a"
    assert memory.first_place("k2", "place-b", 0) is None  # lives at least a second
    assert memory.first_place("k2", "place-c", 300) == "place-b"


def test_a_full_memory_forgets_the_oldest_codes_first() -> None:
    memory: OutageMemory[int] = OutageMemory(max_codes=1000, max_pending=100, metrics=Metrics())
    for i in range(1000):
        memory.first_place(f"k{i}", "p", 300)
    memory.first_place("new", "p", 300)  # full: the oldest tenth goes
    assert memory.first_place("k0", "q", 300) is None  # forgotten
    assert memory.first_place("k999", "q", 300) == "p"  # kept
    assert memory.first_place("new", "q", 300) == "p"


def test_the_waiting_queue_drops_the_oldest_and_counts_them() -> None:
    metrics = Metrics()
    memory: OutageMemory[int] = OutageMemory(max_codes=1000, max_pending=100, metrics=metrics)
    memory.defer(list(range(150)))
    assert (len(memory), memory.dropped) == (100, 50)
    assert memory.take(3) == [50, 51, 52]
    text = metrics.render().decode()
    assert "placegate_degraded_dropped_total 50.0" in text and "placegate_degraded_queue 97.0" in text
