"""The journal of a cluster worker's tracking writes: parts sent as the step runs join into the whole."""

from __future__ import annotations

import threading

from loopml.tracking.journal import Journal, JournalMark, JournalSpooler


def test_parts_taken_since_each_mark_join_into_the_whole_journal() -> None:
    journal = Journal()
    journal.writes.append(("params", {"lr": ("0.1", "0.1")}))
    journal.metrics["loss"] = [(1.0, 0, 1)]
    first, mark = journal.since(JournalMark())
    journal.metrics["loss"].append((0.5, 1, 2))
    journal.metrics["acc"] = [(0.7, 1, 2)]
    journal.writes.append(("tags", {"stage": "train"}))
    second, mark = journal.since(mark)
    third, _ = journal.since(mark)
    assert second.writes == [("tags", {"stage": "train"})]
    assert second.metrics == {"loss": [(0.5, 1, 2)], "acc": [(0.7, 1, 2)]}
    assert not third  # nothing new
    whole = Journal.joined([first, second, third])
    assert whole.writes == journal.writes
    assert whole.metrics == journal.metrics


def test_the_spooler_posts_what_was_logged_while_the_step_runs_and_nothing_twice() -> None:
    journal = Journal()
    posted: list[Journal] = []
    arrived = threading.Event()

    def post(part: Journal) -> None:
        posted.append(part)
        arrived.set()

    with JournalSpooler(journal, post, interval_s=0.01):
        journal.metrics["loss"] = [(1.0, 0, 1)]
        assert arrived.wait(30)
        arrived.clear()
        journal.metrics["loss"].append((0.5, 1, 2))
        journal.writes.append(("note", "half way"))
        assert arrived.wait(30)
    assert Journal.joined(posted).metrics == {"loss": [(1.0, 0, 1), (0.5, 1, 2)]}
    assert Journal.joined(posted).writes == [("note", "half way")]


def test_a_failed_post_is_sent_again_with_the_next_one() -> None:
    journal = Journal()
    posted: list[Journal] = []
    calls = 0
    done = threading.Event()

    def flaky(part: Journal) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the mailbox is not up yet")
        posted.append(part)
        done.set()

    journal.writes.append(("note", "first"))
    with JournalSpooler(journal, flaky, interval_s=0.01):
        assert done.wait(30)
    assert Journal.joined(posted).writes == [("note", "first")]
