"""The in-trial Train controller's end on the trial's word (distsearch._ray.train), without a cluster."""

import asyncio
import threading
import time

import pytest

from distsearch._ray import train as ray_train


class _FakeController:
    """What ``run_until_aborted`` touches of a ``TrainController``: its loop, its callbacks, its
    worker group and its state."""

    def __init__(self, run_s: float):
        self.run_s, self.calls, self.state = run_s, [], None
        test = self

        class Callbacks:
            def invoke_best_effort(self, hook):
                test.calls.append(hook)

        class Group:
            def abort(self):
                test.calls.append("group.abort")

        self._controller_callback_manager, self._group = Callbacks(), Group()

    async def run(self):
        await asyncio.sleep(self.run_s)
        self.calls.append("finished")

    def get_worker_group(self):
        return self._group

    def _set_state(self, state):
        self.state = state


def _set_later(abort: ray_train.Abort, after_s: float) -> None:
    threading.Timer(after_s, abort.set).start()


def test_a_run_ends_as_soon_as_another_thread_sets_the_abort_flag():
    controller, abort = _FakeController(run_s=3600), ray_train.Abort()
    _set_later(abort, 0.05)
    t0 = time.monotonic()
    with pytest.raises(ray_train.RunAborted):
        asyncio.run(ray_train.run_until_aborted(controller, abort))
    assert time.monotonic() - t0 < 2.0
    assert controller.calls == ["before_controller_abort", "group.abort"] and type(controller.state).__name__ == "AbortedState"


def test_a_run_that_finishes_first_is_not_aborted_and_a_late_flag_harms_nothing():
    controller, abort = _FakeController(run_s=0.01), ray_train.Abort()
    asyncio.run(ray_train.run_until_aborted(controller, abort))
    assert controller.calls == ["finished"] and controller.state is None
    abort.set()  # the loop that waited on it has closed
    abort.set()
    assert abort.is_set()


def test_a_flag_set_before_the_run_starts_ends_it_at_once():
    controller, abort = _FakeController(run_s=3600), ray_train.Abort()
    abort.set()
    with pytest.raises(ray_train.RunAborted):
        asyncio.run(ray_train.run_until_aborted(controller, abort))
