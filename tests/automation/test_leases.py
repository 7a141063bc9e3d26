"""Two controllers never act on one model at once: leases, fencing tokens, and a retrain that is not run twice."""

from __future__ import annotations

import threading

import pytest

from conftest import Project
from loopml.automation.store import AutomationStore, Event, LeaseLost, LoopState
from loopml.automation.triggers import request_manual


def test_a_lease_is_held_until_it_expires_and_a_new_holder_gets_a_larger_token(any_project: Project) -> None:
    store = AutomationStore(any_project.tracker.stores.db)
    first = store.acquire("toy", "a", now_ms=1_000, ttl_ms=10_000)
    assert first is not None
    assert first.token == 1
    assert store.acquire("toy", "b", now_ms=5_000, ttl_ms=10_000) is None
    again = store.acquire("toy", "a", now_ms=6_000, ttl_ms=10_000)
    assert again is not None
    assert again.token == 2  # every acquisition is a new token, even by the same holder
    with pytest.raises(LeaseLost):
        store.renew(first, now_ms=6_000, ttl_ms=10_000)
    second = store.acquire("toy", "b", now_ms=17_000, ttl_ms=10_000)
    assert second is not None
    assert second.token == 3


def test_a_new_holder_waits_for_a_fenced_write_in_flight(any_project: Project) -> None:
    """The check and the write it guards are one transaction that holds the lease row: a controller taking
    the lease meanwhile waits for it to commit, so no write with an old token lands after a new holder."""
    import time

    store = AutomationStore(any_project.tracker.stores.db)
    stale = store.acquire("toy", "a", now_ms=0, ttl_ms=1_000)
    assert stale is not None
    checked, order = threading.Event(), []

    def slow_write() -> None:
        guard = store.guard(stale, LoopState(phase="training"), [Event("triggered", "a")], now_ms=500)

        def change(conn: object) -> None:
            guard(conn)  # type: ignore[arg-type]
            checked.set()
            time.sleep(1.0)
            order.append("a committed")

        store.db.transact(change)  # type: ignore[arg-type]

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert checked.wait(30)
    taken = store.acquire("toy", "b", now_ms=5_000, ttl_ms=1_000)
    order.append("b acquired")
    writer.join(30)
    assert taken is not None
    assert order == ["a committed", "b acquired"]
    assert store.state("toy").phase == "training"


def test_a_stale_holder_can_no_longer_write(any_project: Project) -> None:
    store = AutomationStore(any_project.tracker.stores.db)
    stale = store.acquire("toy", "a", now_ms=0, ttl_ms=1_000)
    assert stale is not None
    fresh = store.acquire("toy", "b", now_ms=5_000, ttl_ms=1_000)
    assert fresh is not None
    with pytest.raises(LeaseLost, match="passed to another controller"):
        store.write(stale, LoopState(phase="training"), [Event("triggered", "stale")], now_ms=6_000)
    with pytest.raises(LeaseLost):
        store.renew(stale, now_ms=6_000, ttl_ms=1_000)
    assert store.state("toy").phase == "idle"
    assert store.events("toy") == []  # nothing of the stale write landed
    store.write(fresh, LoopState(phase="training"), [Event("triggered", "fresh")], now_ms=6_000)
    assert store.state("toy").phase == "training"


def test_a_stale_holder_cannot_move_an_alias_either(any_project: Project) -> None:
    from loopml.registry.store import RegistryStore

    store = AutomationStore(any_project.tracker.stores.db)
    stale = store.acquire("toy", "a", now_ms=0, ttl_ms=1_000)
    assert stale is not None
    assert store.acquire("toy", "b", now_ms=5_000, ttl_ms=1_000) is not None
    registry = RegistryStore(any_project.tracker.stores.db)
    with pytest.raises(LeaseLost):
        registry.move_alias("toy", "staging", 1, user="a", guard=store.guard(stale, None, [], now_ms=6_000))
    assert "staging" not in registry.get_model("toy").aliases


def test_two_controllers_at_once_retrain_once(any_project: Project) -> None:
    any_project.policy("params = { sleep_s = 0.5 }")
    request_manual(any_project.tracker, "toy", reason="once", actor="me", now_ms=any_project.clock())
    controllers = [any_project.controller(holder=f"c{i}") for i in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def tick(index: int) -> None:
        barrier.wait()
        outcomes.extend(o.action for o in controllers[index].tick())

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) in (["busy", "promoted"], ["nothing", "promoted"]), outcomes
    assert any_project.kinds().count("training_started") == 1
