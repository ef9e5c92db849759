"""Actor fault tolerance: max_restarts and max_task_retries (real processes)."""
import os
import time

import pytest

import zray

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


@zray.remote(max_restarts=1, max_concurrency=2)
class Flaky:
    def __init__(self):
        self.calls = 0
        self.restarted_at_init = zray.get_runtime_context().was_current_actor_reconstructed

    def reconstructed(self):
        return (self.restarted_at_init,
                zray.get_runtime_context().was_current_actor_reconstructed)

    def pid(self):
        return os.getpid()

    def incr(self):
        self.calls += 1
        return self.calls

    def slow_pid(self):
        time.sleep(1.0)
        return os.getpid()

    def die(self):
        time.sleep(0.2)
        os._exit(1)


def test_restarted_actor_runs_constructor_again_then_dies_for_good(cluster):
    actor = Flaky.remote()
    first_pid = zray.get(actor.pid.remote())
    assert zray.get(actor.incr.remote()) == 1
    assert zray.get(actor.reconstructed.remote()) == (False, False)
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(actor.die.remote(), timeout=30)
    assert zray.get(actor.pid.remote(), timeout=30) != first_pid
    assert zray.get(actor.incr.remote()) == 1          # fresh state after the restart
    assert zray.get(actor.reconstructed.remote()) == (True, True)
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(actor.die.remote(), timeout=30)
    with pytest.raises(zray.exceptions.RayActorError):  # no restarts left
        zray.get(actor.incr.remote(), timeout=30)


def test_in_flight_call_is_retried_after_restart_with_max_task_retries(cluster):
    actor = Flaky.options(max_task_retries=1).remote()
    first_pid = zray.get(actor.pid.remote())
    running = actor.slow_pid.remote()
    actor.die.options(max_task_retries=0).remote()
    assert zray.get(running, timeout=30) != first_pid


def test_in_flight_call_fails_without_max_task_retries(cluster):
    actor = Flaky.remote()
    zray.get(actor.pid.remote())
    running = actor.slow_pid.remote()
    actor.die.remote()
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(running, timeout=30)


class FlakyError(Exception):
    pass


@zray.remote
class FailsAtFirst:
    def __init__(self):
        self.calls = 0

    def flaky(self, failures):
        self.calls += 1
        if self.calls <= failures:
            raise FlakyError(f"call {self.calls}")
        return self.calls

    @zray.method(max_task_retries=3, retry_exceptions=[FlakyError])
    def declared(self, failures):
        return self.flaky(failures)

    def count(self):
        return self.calls


def test_actor_methods_retry_their_exceptions_as_in_ray(cluster):
    # .options() on the call
    actor = FailsAtFirst.remote()
    ref = actor.flaky.options(max_task_retries=2, retry_exceptions=True).remote(2)
    assert zray.get(ref, timeout=30) == 3
    # @zray.method(max_task_retries=, retry_exceptions=[types]) on the method
    actor = FailsAtFirst.remote()
    assert zray.get(actor.declared.remote(3), timeout=30) == 4
    # Out of retries: the last exception is raised, after 1 + 3 calls.
    actor = FailsAtFirst.remote()
    with pytest.raises(FlakyError, match="call 4"):
        zray.get(actor.declared.remote(10), timeout=30)
    # Not retried: without retry_exceptions, or an exception type not listed.
    actor = FailsAtFirst.remote()
    with pytest.raises(FlakyError, match="call 1"):
        zray.get(actor.flaky.options(max_task_retries=5).remote(1), timeout=30)
    with pytest.raises(FlakyError, match="call 2"):
        zray.get(actor.flaky.options(max_task_retries=5, retry_exceptions=[KeyError]).remote(2),
                 timeout=30)
    assert zray.get(actor.count.remote(), timeout=30) == 2
    # The actor's own max_task_retries is the budget when the method has none.
    actor = FailsAtFirst.options(max_task_retries=1).remote()
    assert zray.get(actor.flaky.options(retry_exceptions=True).remote(1), timeout=30) == 2


@zray.remote(max_restarts=1)
class ExitsOnce:
    def run(self, marker: str, how: str):
        import sys
        if not os.path.exists(marker):
            open(marker, "w").close()
            if how == "sys.exit(1)":
                sys.exit(1)
            os._exit(0)
        return "second attempt"


@pytest.mark.parametrize("how,threads", [("os._exit(0)", 1), ("sys.exit(1)", 2)])
def test_an_actor_process_that_exits_by_itself_is_restarted_and_the_call_retried(
        cluster, tmp_path, how, threads):
    """Only exit_actor() and the like are intended exits: os._exit(0) or
    sys.exit() in a method (even on a pool thread of a threaded actor) is a
    crash, as in Ray."""
    actor = ExitsOnce.options(max_concurrency=threads).remote()
    ref = actor.run.options(max_task_retries=1).remote(str(tmp_path / "ran"), how)
    assert zray.get(ref, timeout=60) == "second attempt"


@zray.remote
class RetriesBeforeAnother:
    def __init__(self):
        self.calls = 0

    @zray.method(max_task_retries=1, retry_exceptions=[FlakyError])
    def one(self, gate: str):
        while not os.path.exists(gate):
            time.sleep(0.01)
        self.calls += 1
        if self.calls == 1:
            raise FlakyError("first attempt")
        return 1

    def two(self, one_output):
        return one_output + 1


def test_a_retried_call_is_not_stuck_behind_a_call_waiting_for_its_result(cluster, tmp_path):
    actor = RetriesBeforeAnother.remote()
    gate = str(tmp_path / "gate")
    first = actor.one.remote(gate)
    second = actor.two.remote(first)      # queued at the owner until `first` is done
    open(gate, "w").close()
    assert zray.get(second, timeout=30) == 2
