"""Run slots without services: a process holds at most its thread count of runs across queues,
and a machine's lock files cap every process on it (supertest/slots.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from dramatiq.message import Message

from supertest import config
from supertest.slots import MachineSlots, RunSlotBroker, RunSlots, SlotSizing


class Queue:
    """Redis's side of a fetch: hands out numbered messages, counting how often it was asked."""

    def __init__(self, name: str = "m") -> None:
        self.name = name
        self.asked = 0
        self.given = 0

    def __call__(self, count: int) -> list[bytes]:
        self.asked += 1
        self.given += 1
        message = Message(queue_name="test-execution", actor_name="execute_test_run", args=(), kwargs={},
                          options={"redis_message_id": f"{self.name}{self.given}"})
        return [message.encode()] * min(count, 1)


def sized(size: int, machine: MachineSlots | None = None) -> RunSlots:
    slots = RunSlots(machine)
    slots.size = size
    return slots


def test_a_process_holds_no_more_runs_than_threads_whatever_the_queue_asks() -> None:
    slots, tests, jobs = sized(2), Queue("t"), Queue("j")
    assert len(slots.fetch(4, tests)) == 1  # one at a time, however many the consumer may prefetch
    assert len(slots.fetch(4, jobs)) == 1   # the other queue shares the count
    assert slots.fetch(4, tests) == [] and slots.fetch(4, jobs) == []
    assert (tests.asked, jobs.asked) == (1, 1)  # full: Redis is not asked, so nothing waits here
    slots.release("t1")
    assert len(slots.fetch(4, jobs)) == 1 and slots.held() == 2


def test_slots_are_given_back_once_and_an_empty_queue_holds_none() -> None:
    slots = sized(1)
    assert slots.fetch(1, lambda count: []) == [] and slots.held() == 0
    slots.fetch(1, Queue())
    slots.release("m1", "m1", "unknown")  # acknowledged, then tried again: still one slot back
    assert slots.held() == 0


def test_a_worker_not_booted_or_stopping_takes_nothing() -> None:
    queue = Queue()
    assert sized(0).fetch(2, queue) == [] and queue.asked == 0


def test_machine_slots_cap_every_process_and_come_back(tmp_path: Path) -> None:
    # Two processes' views of one machine: flock locks of separately opened files conflict as across processes.
    first, second = (sized(2, MachineSlots(3, tmp_path / "slots")) for _ in range(2))
    queue = Queue()
    taken = [first.fetch(1, queue), first.fetch(1, queue), second.fetch(1, queue), second.fetch(1, queue)]
    assert [len(messages) for messages in taken] == [1, 1, 1, 0]
    first.release("m1")
    assert len(second.fetch(1, queue)) == 1


def test_a_machine_slot_comes_back_when_the_fetch_fails_or_finds_nothing(tmp_path: Path) -> None:
    slots = sized(1, MachineSlots(1, tmp_path / "slots"))

    def broken(count: int) -> list[bytes]:
        raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        slots.fetch(1, broken)
    assert slots.fetch(1, lambda count: []) == []
    assert len(slots.fetch(1, Queue())) == 1


def test_free_says_whether_one_more_run_could_be_taken_now(tmp_path: Path) -> None:
    machine = MachineSlots(1, tmp_path / "slots")
    first, second = sized(1, machine), sized(1, MachineSlots(1, tmp_path / "slots"))
    assert first.free() and second.free()
    first.fetch(1, Queue())
    assert not first.free()   # its one thread is taken
    assert not second.free()  # the machine's one slot is
    first.release("m1")
    assert second.free() and sized(0).free() is False  # a worker not booted, or stopping, has none


def test_a_lock_folder_others_may_write_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slots").mkdir(mode=0o777)
    (tmp_path / "slots").chmod(0o777)
    with pytest.raises(RuntimeError, match="others may write"):
        MachineSlots(1, tmp_path / "slots").take()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_runs_per_machine_is_a_whole_number_from_one(value: str) -> None:
    with pytest.raises(config.ConfigError, match="MAX_RUNS_PER_MACHINE"):
        config.from_env({"MAX_RUNS_PER_MACHINE": value})
    assert config.from_env({})["MAX_RUNS_PER_MACHINE"] == 0  # unset: each process's threads are the limit
    assert config.from_env({"MAX_RUNS_PER_MACHINE": "6"})["MAX_RUNS_PER_MACHINE"] == 6


class Booting:
    """What SlotSizing reads of a worker that boots: its threads and the queues it consumes."""

    def __init__(self, threads: int, queues: set[str] | None) -> None:
        self.worker_threads, self.consumer_whitelist = threads, queues


@pytest.mark.parametrize(("queues", "threads"), [
    ({"test-execution", "job-execution", "notifications"}, 3),  # a thread of its own for alerts
    ({"test-execution", "job-execution"}, 2),
    ({"notifications"}, 3),
])
def test_a_worker_that_delivers_alerts_has_a_thread_no_run_can_take(queues: set[str], threads: int) -> None:
    slots, worker = RunSlots(), Booting(2, queues)
    SlotSizing(slots, other_queues=("notifications",)).before_worker_boot(None, worker)  # type: ignore[arg-type]
    assert (slots.size, worker.worker_threads) == (2, threads)


def test_an_alert_is_fetched_even_when_every_run_slot_is_taken() -> None:
    broker = RunSlotBroker(slots=sized(1), run_queues=("test-execution", "job-execution"),
                           url="redis://127.0.0.1:1/0")  # never connected: the fetch below is Redis's side
    runs, alerts = Queue("r"), Queue("a")
    broker._dispatch = lambda command: (lambda queue, count: (runs if queue == "test-execution" else alerts)(count))
    assert len(broker.do_fetch("test-execution", 2)) == 1
    assert broker.do_fetch("test-execution", 2) == [] and runs.asked == 1  # the one slot is taken
    assert len(broker.do_fetch("notifications", 2)) == 1 and broker.slots.held() == 1
