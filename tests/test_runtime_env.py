"""runtime_env: env_vars (job-level, per task, per actor, inherited by nested
tasks; workers are started with the variables, separate from default ones),
working_dir and py_modules (session copies workers start in / import from)."""
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
    with pytest.raises(TypeError, match="'runtime_env' must be dict"):
        read.options(runtime_env=["env_vars"])
    with pytest.raises(ValueError, match="'working_dir' '/no/such/dir' does not exist"):
        Reader.options(runtime_env={"working_dir": "/no/such/dir"}).remote()
    with pytest.raises(ValueError, match="remote URIs are not supported"):
        read.options(runtime_env={"working_dir": "s3://bucket/x.zip"}).remote("X")
    with pytest.raises(TypeError, match="'py_modules' must be a list"):
        read.options(runtime_env={"py_modules": "mod"}).remote("X")


@zray.remote
def in_working_dir():
    import wd_helper   # importable from the working_dir copy
    with open("data.txt") as f:
        data = f.read()
    return os.getcwd(), wd_helper.VALUE, data, os.path.exists("skipped.log")


@zray.remote
def imports_modules():
    import wd_pkg
    import wd_single
    return wd_pkg.NAME, wd_single.NAME


def _project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "wd_helper.py").write_text("VALUE = 42\n")
    (project / "data.txt").write_text("hello")
    (project / "skipped.log").write_text("left out")
    return project


def test_working_dir_is_a_session_copy_workers_start_in(cluster, tmp_path):
    project = _project(tmp_path)
    env = {"working_dir": str(project), "excludes": ["*.log"]}
    cwd, value, data, has_log = zray.get(in_working_dir.options(runtime_env=env).remote(),
                                          timeout=30)
    assert (value, data, has_log) == (42, "hello", False)
    session = zray.get_runtime_context()._worker.session_dir
    assert cwd.startswith(os.path.join(session, "runtime_resources") + os.sep)
    assert os.getcwd() != cwd                        # the driver stays where it was
    # A copy, made at first use: later edits of the source do not reach it.
    (project / "data.txt").write_text("changed")
    assert zray.get(in_working_dir.options(runtime_env=env).remote(), timeout=30)[2] == "hello"


def test_py_modules_are_importable_in_workers(cluster, tmp_path):
    package = tmp_path / "wd_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("NAME = 'package'\n")
    single = tmp_path / "wd_single.py"
    single.write_text("NAME = 'module'\n")
    env = {"py_modules": [str(package), str(single)]}
    assert tuple(zray.get(imports_modules.options(runtime_env=env).remote(), timeout=30)) == (
        "package", "module")
    # Local file:// URIs name the same sources (Ray takes them too).
    env = {"py_modules": [f"file://localhost{package}", f"file://{single}"]}
    assert tuple(zray.get(imports_modules.options(runtime_env=env).remote(), timeout=30)) == (
        "package", "module")
    with pytest.raises(ValueError, match="must name this host"):
        imports_modules.options(runtime_env={"py_modules": ["file://elsewhere/x"]}).remote()


def test_working_dir_from_a_zip_and_for_actors(cluster, tmp_path):
    import zipfile
    project = _project(tmp_path)
    archive = tmp_path / "project.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("wd_helper.py", "data.txt"):
            z.write(project / name, f"project/{name}")
    cwd, value, data, _ = zray.get(in_working_dir.options(
        runtime_env={"working_dir": str(archive)}).remote(), timeout=30)
    assert (value, data) == (42, "hello") and os.path.basename(cwd) == "project"

    @zray.remote(runtime_env={"working_dir": str(project)})
    class InDir:
        def read(self):
            with open("data.txt") as f:
                return f.read()

    assert zray.get(InDir.remote().read.remote(), timeout=30) == "hello"


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
