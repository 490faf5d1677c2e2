"""Idle consumers wait in Redis for an enqueue instead of polling (supertest/wake.py), on the real
Redis, each test on a queue namespace of its own. A wait of 4 s (under redis-py's socket timeout)
stands for "never": a consumer that is woken answers within the 3 s a thread is given here."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq.message import Message

from supertest.slots import RunSlotBroker, RunSlots
from supertest.wake import WAKE_TOKENS, WakingRedisBroker
from tests.conftest import REDIS_URL
from tests.test_operations import forget_namespace

NEVER = 4.0


@pytest.fixture()
def namespace() -> Iterator[str]:
    name = f"supertest-wake-{uuid.uuid4().hex[:8]}"
    yield name
    forget_namespace(name)


def message(queue: str = "q") -> Message:
    return Message(queue_name=queue, actor_name="a", args=(), kwargs={}, options={})


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """Start `call` in a thread; its answer lands in the list."""
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(call()), daemon=True)
    thread.start()
    return thread, answer


def broker_as(name: str, namespace: str, cls: type[WakingRedisBroker] = WakingRedisBroker,
              **parameters: Any) -> Any:
    """A broker, standing for one worker process, whose Redis connections are named `name`."""
    return cls(url=f"{REDIS_URL}?client_name={name}", namespace=namespace, wake_seconds=NEVER, **parameters)


def blocked(broker: WakingRedisBroker, within: float = 3.0) -> None:
    """Wait until the broker's process is blocked in BLPOP (an idle consumer waiting), or fail."""
    name = broker.client.connection_pool.connection_kwargs["client_name"]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(entry["name"] == name and entry["cmd"] == "blpop" for entry in broker.client.client_list()):
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} never waited")


def test_an_idle_consumer_is_woken_by_an_enqueue(namespace: str) -> None:
    broker = broker_as(f"{namespace}-idle", namespace)
    waiting, answer = in_thread(lambda: broker.do_fetch("q", 1))
    blocked(broker)
    sent = WakingRedisBroker(url=REDIS_URL, namespace=namespace).enqueue(message())  # another process's
    waiting.join(3)
    assert not waiting.is_alive(), "the enqueue did not wake the waiting consumer"
    assert [Message.decode(data).message_id for data in answer[0]] == [sent.message_id]


def test_an_enqueue_between_the_empty_fetch_and_the_wait_is_not_missed(namespace: str) -> None:
    class Late(WakingRedisBroker):
        def fetch(self, queue_name: str, count: int) -> list[bytes]:
            found = super().fetch(queue_name, count)
            if not found and not sent:  # Redis said "empty", and the message comes right after
                sent.append(self.enqueue(message()))
            return found

    sent: list[Message] = []
    broker = Late(url=REDIS_URL, namespace=namespace, wake_seconds=NEVER)
    waiting, answer = in_thread(lambda: broker.do_fetch("q", 1))
    waiting.join(3)
    assert not waiting.is_alive() and [Message.decode(data).message_id for data in answer[0]] == [sent[0].message_id]


def test_an_empty_wait_ends_with_redis_s_timeout(namespace: str) -> None:
    broker = WakingRedisBroker(url=REDIS_URL, namespace=namespace, wake_seconds=0.3)
    start = time.monotonic()
    assert broker.do_fetch("q", 1) == []
    assert time.monotonic() - start >= 0.3  # it waited, rather than answered at once to be asked again


def test_a_delay_queue_waits_only_while_it_holds_no_delayed_message(namespace: str) -> None:
    # Dramatiq moves delayed messages to their queue between fetches: a wait would make them late.
    broker = broker_as(f"{namespace}-delays", namespace)
    broker.consume("q.DQ", prefetch=5, timeout=100)
    holding, answer = in_thread(lambda: broker.do_fetch("q.DQ", 4))  # one delayed message held
    holding.join(3)
    assert not holding.is_alive() and answer == [[]]
    idle, answer = in_thread(lambda: broker.do_fetch("q.DQ", 5))
    blocked(broker)
    broker.enqueue(message(), delay=60_000)  # a retry, say: it goes to the delay queue, and wakes its consumer
    idle.join(3)
    assert not idle.is_alive() and len(answer[0]) == 1


def test_a_process_with_no_free_slot_leaves_the_message_and_its_token_to_others(namespace: str) -> None:
    slots = RunSlots()
    slots.size = 1
    broker = RunSlotBroker(slots=slots, run_queues=("test-execution",), url=REDIS_URL, namespace=namespace,
                           wake_seconds=NEVER)
    broker.enqueue(message("test-execution"))
    broker.enqueue(message("test-execution"))
    assert len(broker.do_fetch("test-execution", 2)) == 1 and not slots.free()
    full, answer = in_thread(lambda: broker.do_fetch("test-execution", 1))
    full.join(3)
    assert not full.is_alive() and answer == [[]]
    assert broker.client.llen(broker.wake_key("test-execution")) == 2  # no token taken: any worker may be woken
    assert broker.client.llen(f"{namespace}:test-execution") == 1      # and the message waits for one


def test_a_process_whose_slot_went_while_it_waited_hands_the_wake_up_on(namespace: str) -> None:
    # P has one slot, shared by its two queues' consumers; Q (another worker) has a slot free.
    queues = ("test-execution", "job-execution")
    p_slots, q_slots = RunSlots(), RunSlots()
    p_slots.size = q_slots.size = 1
    p = broker_as(f"{namespace}-p", namespace, RunSlotBroker, slots=p_slots, run_queues=queues)
    q = broker_as(f"{namespace}-q", namespace, RunSlotBroker, slots=q_slots, run_queues=queues)
    p_jobs, p_answer = in_thread(lambda: p.do_fetch("job-execution", 1))
    blocked(p)  # first in line: Redis wakes waiters in the order they came
    q_jobs, q_answer = in_thread(lambda: q.do_fetch("job-execution", 1))
    blocked(q)
    p.enqueue(message("test-execution"))
    assert len(p.do_fetch("test-execution", 1)) == 1 and not p_slots.free()  # P's test consumer took the slot
    p.enqueue(message("job-execution"))
    p_jobs.join(3), q_jobs.join(3)
    assert not p_jobs.is_alive() and p_answer == [[]]
    assert not q_jobs.is_alive(), "the wake-up stayed with the process that could not start the run"
    assert len(q_answer[0]) == 1


def test_a_wake_list_nobody_waits_on_stays_small(namespace: str) -> None:
    broker = WakingRedisBroker(url=REDIS_URL, namespace=namespace)
    for _ in range(WAKE_TOKENS + 6):
        broker.enqueue(message())
    assert broker.client.llen(broker.wake_key("q")) == WAKE_TOKENS
