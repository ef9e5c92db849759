"""runtime_env env_vars: job-level, per task, per actor, inherited by nested
tasks; workers are started with the variables (separate from default ones)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import zray
from zray import runtime_env

CLUSTER = dict(num_cpus=2, runtime_env={"env_vars": {"JOB_VAR": "job"}})

pytestmark = pytest.mark.timeout(90)


@zray.remote
def read(*names):
    return [os.environ.get(name) for name in names]


@zray.remote
def worker_env():
    return os.getpid(), os.environ.get(runtime_env.WORKER_ENV_VAR)


@zray.remote
def nested():
    return zray.get(read.remote("JOB_VAR", "TASK_VAR"))


@zray.remote
class Reader:
    def read(self, *names):
        return [os.environ.get(name) for name in names]


def test_job_task_and_actor_env_vars(cluster):
    assert zray.get(read.remote("JOB_VAR", "TASK_VAR")) == ["job", None]
    task_env = {"env_vars": {"TASK_VAR": "task", "JOB_VAR": "overridden"}}
    assert zray.get(read.options(runtime_env=task_env).remote("JOB_VAR", "TASK_VAR")) == [
        "overridden", "task"]
    # A worker started for one environment never runs another's tasks.
    assert zray.get(read.remote("JOB_VAR", "TASK_VAR")) == ["job", None]
    reader = Reader.options(runtime_env={"env_vars": {"ACTOR_VAR": "actor"}}).remote()
    assert zray.get(reader.read.remote("JOB_VAR", "ACTOR_VAR")) == ["job", "actor"]


def test_nested_tasks_inherit_their_parent_env(cluster):
    parent_env = {"env_vars": {"TASK_VAR": "from-parent"}}
    assert zray.get(nested.options(runtime_env=parent_env).remote(), timeout=60) == [
        "job", "from-parent"]


def test_workers_are_started_with_the_variables(cluster):
    default_pid, default_env = zray.get(worker_env.remote())
    other = {"env_vars": {"OTHER": "1"}}
    other_pid, other_env = zray.get(worker_env.options(runtime_env=other).remote())
    assert other_pid != default_pid
    assert dict(runtime_env.check_pairs(json.loads(other_env))) == {
        "JOB_VAR": "job", "OTHER": "1"}
    assert dict(runtime_env.check_pairs(json.loads(default_env))) == {"JOB_VAR": "job"}


def test_unsupported_fields_and_bad_values_are_named(cluster):
    with pytest.raises(ValueError, match=r"\['pip'\] are not supported"):
        read.options(runtime_env={"pip": ["requests"]}).remote("X")
    with pytest.raises(TypeError, match="must map str to str"):
        read.options(runtime_env={"env_vars": {"N": 1}}).remote("X")
    with pytest.raises(TypeError, match="must be a dict"):
        read.options(runtime_env=["env_vars"]).remote("X")
    with pytest.raises(ValueError, match="working_dir"):
        Reader.options(runtime_env={"working_dir": "."}).remote()


def test_init_rejects_a_bad_runtime_env_before_starting_anything():
    script = ("import zray, psutil\n"
              "try:\n"
              "    zray.init(num_cpus=1, runtime_env={'conda': 'env'})\n"
              "except ValueError as exc:\n"
              "    print('error:', exc)\n"
              "print('children:', len(psutil.Process().children(recursive=True)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "error: init(runtime_env=...) field(s) ['conda'] are not supported" in done.stdout, done.stderr
    assert "children: 0" in done.stdout


def test_merge_and_normalize():
    assert runtime_env.normalize(None) == ()
    assert runtime_env.normalize({"env_vars": {"B": "2", "A": "1"}}) == (("A", "1"), ("B", "2"))
    assert runtime_env.merge((("A", "1"),), (("A", "2"), ("C", "3"))) == (("A", "2"), ("C", "3"))
    with pytest.raises(ValueError):
        runtime_env.check_pairs([("A",)])


def test_the_raylet_answers_a_malformed_env_with_lease_failed(cluster):
    import zmq
    from zray.core import process_state
    from zray.sockets import messages as m
    cw = process_state.worker
    sock = zmq.Context.instance().socket(zmq.DEALER)
    try:
        sock.connect(cw.raylet_endpoint)
        sock.send(m.encode(m.RequestWorkerLease(7, {"CPU": 1}, None, cw.job_id, (("ONLY_A_NAME",),))))
        assert sock.poll(10_000), "no answer from the raylet"
        reply = m.decode(sock.recv())
        assert type(reply) is m.LeaseFailed and reply.request_id == 7
        assert "bad lease request" in reply.message and "ONLY_A_NAME" in reply.message
    finally:
        sock.close(0)
    assert zray.get(read.remote("JOB_VAR")) == ["job"]      # the raylet carries on
