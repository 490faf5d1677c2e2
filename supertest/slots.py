"""Run slots: a worker process takes a message only when it can start it at once.

Dramatiq's consumers prefetch per queue (`dramatiq_queue_prefetch`), counting each queue's
unacknowledged messages on their own: with one message per queue, a process with any number of
threads runs one test run and one job run at once; with more, it holds messages its busy threads
cannot start, which idle workers elsewhere then wait for. Here one count covers both queues: a
worker process holds at most WORKER_THREADS messages in all (a slot each, from the fetch until
the acknowledgement), so each message it holds has a thread free to run it, and what it cannot
start stays in Redis for any worker. MAX_RUNS_PER_MACHINE adds a limit over every worker process
on the machine, held through lock files (flock), so a process that dies lets go of its slots.

The limit sits where Redis is asked for messages (`RunSlotBroker.fetch`), not in a middleware
that refuses messages already fetched: a refused message would have to be handed back to the
end of its queue, out of order, and another process might have started it meanwhile.

Other queues (`notifications`) take no slot: a worker that consumes one gets a thread more than
its run slots, so an alert is never stuck behind long runs, and runs keep every slot.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from supertest.locks import LockFolder
from supertest.wake import WakingRedisBroker


class MachineSlots:
    """`count` lock files, one per run at once on this machine; a slot is an flock on one of them."""

    def __init__(self, count: int, lock_dir: Path | None = None) -> None:
        self.count = count
        self.locks = LockFolder("supertest-run-slots", lock_dir)

    def take(self) -> int | None:
        """A free slot (the locked file's descriptor, to give back), or None when all are taken."""
        taken = self.locks.take_one(range(self.count))
        return None if taken is None else taken[1]

    @staticmethod
    def give_back(fd: int) -> None:
        os.close(fd)  # lets go of the lock


class RunSlots:
    """The runs one worker process may hold at once: `size` (its thread count, set when the worker
    boots; 0 until then and once it is stopping), and a machine slot each when `machine` is set.

    Slots are counted by message, keyed by its Redis id, process-wide: a consumer that Dramatiq
    restarts after a lost connection starts with empty books, but its messages still running
    give their slots back when they are acknowledged.
    """

    def __init__(self, machine: MachineSlots | None = None) -> None:
        self.size = 0
        self.machine = machine
        self._lock = threading.Lock()
        self._held: dict[str, int | None] = {}  # Redis message id → its machine slot's descriptor

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def free(self) -> bool:
        """Whether the process could take one more run now, on the machine's slots too."""
        with self._lock:
            if len(self._held) >= self.size:
                return False
            fd = self.machine.take() if self.machine else None
            if fd is not None:
                MachineSlots.give_back(fd)
            return self.machine is None or fd is not None

    def fetch(self, wanted: int, fetch: Any) -> list[bytes]:
        """At most one message from `fetch(count)`, and only with a slot free for it.

        One at a time: the consumer turns each fetched message into work before it asks again, so
        no fetched message waits in its cache, where a consumer that fails would leave it (and its
        slot) behind. The lock makes the count and the fetch one step, so the consumers of the two
        queues never both take the last slot.
        """
        with self._lock:
            if wanted < 1 or len(self._held) >= self.size:
                return []
            fd = self.machine.take() if self.machine else None
            if self.machine and fd is None:
                return []
            try:
                messages: list[bytes] = fetch(1)
            except BaseException:
                if fd is not None:
                    MachineSlots.give_back(fd)
                raise
            if not messages:
                if fd is not None:
                    MachineSlots.give_back(fd)
                return []
            self._held[Message.decode(messages[0]).options["redis_message_id"]] = fd
            return messages

    def release(self, *message_ids: str) -> None:
        """The messages are done (acknowledged, rejected or handed back): their slots are free."""
        with self._lock:
            for message_id in message_ids:
                fd = self._held.pop(message_id, None)
                if fd is not None:
                    MachineSlots.give_back(fd)


class RunSlotBroker(WakingRedisBroker):
    """Dramatiq's Redis broker, asking Redis for a run's message only when a slot is free for it.

    Dramatiq's consumer still works out how many it may prefetch for its own queue; this caps it
    by the slots free in the whole process. Delay queues (retries waiting for their time) are not
    runs and are fetched as before; their consumers also keep this worker's heartbeat in Redis
    fresh while every slot is busy and the run queues' consumers ask Redis nothing.
    """

    def __init__(self, *, slots: RunSlots, run_queues: tuple[str, ...], **parameters: Any) -> None:
        super().__init__(**parameters)
        self.slots = slots
        self.run_queues = frozenset(run_queues)

    def fetch(self, queue_name: str, count: int) -> list[bytes]:
        ask = super().fetch
        if q_name(queue_name) != queue_name or queue_name not in self.run_queues:  # a delay queue, or no run
            return ask(queue_name, count)
        return self.slots.fetch(count, lambda n: ask(queue_name, n))

    def may_wait(self, queue_name: str, count: int) -> bool:
        """A run queue's consumer waits for an enqueue only with a slot free: a full process must
        leave the wake-up (and the message) to a worker that can start it."""
        if queue_name in self.run_queues:
            return self.slots.free()
        return super().may_wait(queue_name, count)

    def do_ack(self, queue_name: str, message_id: str) -> Any:
        try:
            return self._dispatch("ack")(queue_name, message_id)
        finally:  # the run is over even if Redis missed the word (Dramatiq tries again)
            self.slots.release(message_id)

    def do_nack(self, queue_name: str, message_id: str) -> Any:
        try:
            return self._dispatch("nack")(queue_name, message_id)
        finally:
            self.slots.release(message_id)

    def do_requeue(self, queue_name: str, *message_ids: str) -> Any:
        try:
            return super().do_requeue(queue_name, *message_ids)
        finally:
            self.slots.release(*message_ids)


class SlotSizing(Middleware):
    """Sizes the slots to the worker's threads when it boots, and closes them when it stops: a
    stopping worker's threads finish their runs (handing them back), and it takes no new ones.

    A worker that also consumes a queue of no runs (`other_queues`) gets one thread more than its
    slots (the threads are started after this hook), which runs can never all take.
    """

    def __init__(self, slots: RunSlots, other_queues: tuple[str, ...] = ()) -> None:
        self.slots = slots
        self.other_queues = frozenset(other_queues)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.slots.size = worker.worker_threads
        consumed = worker.consumer_whitelist or set(broker.get_declared_queues())
        if self.other_queues & set(consumed):
            worker.worker_threads += 1

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.slots.size = 0
