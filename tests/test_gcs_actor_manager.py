"""Tests for zray.gcs.actor_manager (and its actor_events): the pure actor state machine, no sockets."""

import pytest

from zray.gcs import actor_events as ae
from zray.gcs import actor_manager as am
from zray.core.task_spec import TaskSpec
from zray.gcs.errors import GcsErrorCode
from zray.sockets.messages import ReturnKind, TaskStatus

NODE_A = b"A" * 16
NODE_B = b"B" * 16
JOB_1 = b"\x01\x00\x00\x00"
JOB_2 = b"\x02\x00\x00\x00"
# A creation task with every TaskSpec field empty (the manager only adds options).
CREATION_TASK = tuple([None] * len(TaskSpec._fields))


def of_type(actions, cls):
    return [a for a in actions if type(a) is cls]


def only(actions, cls):
    found = of_type(actions, cls)
    assert len(found) == 1, f"expected one {cls.__name__} in {actions}"
    return found[0]


def spec(actor_id, **overrides):
    base = dict(actor_id=actor_id, job_id=JOB_1, name=None, namespace="ns", detached=False,
                get_if_exists=False, resources={"CPU": 1}, creation_task=CREATION_TASK,
                class_name="Counter", max_restarts=0)
    base.update(overrides)
    return base


class Cluster:
    """An ActorManager plus helpers that play the raylet and the worker."""

    def __init__(self, *nodes, cpus=4):
        self.manager = am.ActorManager()
        self.now = 0.0
        self.workers = 0
        self.persisted = {}    # what the server would have written to the actors table
        for node_id in nodes:
            self.add_node(node_id, {"CPU": cpus})

    def handle(self, event):
        actions = self.manager.handle(event, self.now)
        for action in actions:
            if type(action) in (ae.SaveActor, ae.PublishActor):
                self.persisted[action.record["actor_id"]] = action.record
        return actions

    def add_node(self, node_id, total, available=None):
        return self.handle(ae.NodeAddedEvent(node_id, total, dict(available or total)))

    def create(self, actor_id, **overrides):
        return self.handle(ae.CreateActorEvent(("ref", actor_id), spec(actor_id, **overrides)))

    def grant(self, lease: ae.RequestLease):
        self.workers += 1
        worker_id = b"W%015d" % self.workers
        endpoint = f"ipc:///tmp/worker-{self.workers}"
        actions = self.handle(ae.LeaseGrantedEvent(lease.request_id, self.workers, worker_id,
                                                   endpoint, lease.node_id))
        return worker_id, actions

    def reply(self, push: ae.PushCreationTask, status=TaskStatus.OK, returns=()):
        return self.handle(ae.CreationTaskRepliedEvent(push.actor_id, push.worker_endpoint,
                                                       status, list(returns)))

    def start_actor(self, actor_id, **overrides):
        """Create and bring an actor to ALIVE; returns its worker id."""
        lease = only(self.create(actor_id, **overrides), ae.RequestLease)
        return self.bring_up(lease)

    def bring_up(self, lease):
        worker_id, actions = self.grant(lease)
        push = only(actions, ae.PushCreationTask)
        assert TaskSpec(*push.spec)._replace(options=None) == TaskSpec(*CREATION_TASK)
        self.reply(push)
        assert self.state(lease.actor_id) == am.ALIVE
        return worker_id

    def state(self, actor_id):
        return self.manager.info(actor_id)["state"]


def test_creation_publishes_replies_then_leases_and_becomes_alive():
    cluster = Cluster(NODE_A)
    actions = cluster.create(b"x1")
    assert [type(a) for a in actions] == [ae.PublishActor, ae.Reply, ae.RequestLease]
    assert actions[0].record["state"] == am.PENDING_CREATION
    assert actions[1] == ae.Reply(("ref", b"x1"), True, {"actor_id": b"x1", "existing": False})
    lease = actions[2]
    assert (lease.node_id, lease.resources, lease.actor_id, lease.job_id) == (
        NODE_A, {"CPU": 1}, b"x1", JOB_1)
    worker_id, actions = cluster.grant(lease)
    push = only(actions, ae.PushCreationTask)
    actions = cluster.reply(push)
    assert of_type(actions, ae.CloseWorkerChannel) == [ae.CloseWorkerChannel(push.worker_endpoint)]
    assert only(actions, ae.PublishActor).record["state"] == am.ALIVE
    info = cluster.manager.info(b"x1")
    assert (info["state"], info["endpoint"], info["worker_id"]) == (
        am.ALIVE, push.worker_endpoint, worker_id)


def test_wait_alive_reply_is_deferred_until_alive():
    cluster = Cluster(NODE_A)
    lease = only(cluster.create(b"x1"), ae.RequestLease)
    assert cluster.handle(ae.GetActorInfoEvent("waiter", b"x1", True)) == []
    immediate = only(cluster.handle(ae.GetActorInfoEvent("peek", b"x1", False)), ae.Reply)
    assert immediate.payload["state"] == am.PENDING_CREATION
    _, actions = cluster.grant(lease)
    actions = cluster.reply(only(actions, ae.PushCreationTask))
    released = only(actions, ae.Reply)
    assert released.request_ref == "waiter" and released.payload["state"] == am.ALIVE


def test_unknown_actor_is_an_error_reply():
    reply = only(Cluster().handle(ae.GetActorInfoEvent("r", b"nope", True)), ae.Reply)
    assert not reply.ok and reply.payload[0] == GcsErrorCode.UNKNOWN_ACTOR


def test_constructor_error_kills_worker_and_keeps_error():
    cluster = Cluster(NODE_A)
    lease = only(cluster.create(b"x1", max_restarts=3), ae.RequestLease)
    cluster.handle(ae.GetActorInfoEvent("waiter", b"x1", True))
    worker_id, actions = cluster.grant(lease)
    actions = cluster.reply(only(actions, ae.PushCreationTask), returns=[(ReturnKind.ERROR, b"boom")])
    assert only(actions, ae.KillWorker).worker_id == worker_id
    info = only(actions, ae.Reply).payload
    assert info["state"] == am.DEAD and info["creation_error"] == b"boom"
    assert info["death_message"] == am.CREATION_ERROR_MESSAGE
    assert not of_type(actions, ae.RequestLease)   # a raising constructor is not retried


def test_worker_death_restarts_until_max_restarts_then_dies():
    cluster = Cluster(NODE_A)
    worker_id = cluster.start_actor(b"x1", max_restarts=1)
    actions = cluster.handle(ae.WorkerDiedEvent(worker_id, "segfault"))
    assert only(actions, ae.PublishActor).record["state"] == am.RESTARTING
    worker_id = cluster.bring_up(only(actions, ae.RequestLease))
    assert cluster.manager.info(b"x1")["num_restarts"] == 1
    actions = cluster.handle(ae.WorkerDiedEvent(worker_id, "segfault again"))
    assert only(actions, ae.PublishActor).record["state"] == am.DEAD
    assert "segfault again" in cluster.manager.info(b"x1")["death_message"]
    assert not of_type(actions, ae.RequestLease)


def test_a_restarted_actor_is_told_its_restart_count():
    cluster = Cluster(NODE_A)
    worker_id = cluster.start_actor(b"x1", max_restarts=1)
    lease = only(cluster.handle(ae.WorkerDiedEvent(worker_id, "segfault")), ae.RequestLease)
    _, actions = cluster.grant(lease)
    pushed = TaskSpec(*only(actions, ae.PushCreationTask).spec)
    assert pushed.options == {"num_restarts": 1}


def test_an_intended_exit_is_not_restarted():
    cluster = Cluster(NODE_A)
    worker_id = cluster.start_actor(b"x1", max_restarts=3)
    actions = cluster.handle(ae.WorkerDiedEvent(worker_id, "exited with code 0", True))
    assert only(actions, ae.PublishActor).record["state"] == am.DEAD
    assert "INTENDED_USER_EXIT" in cluster.manager.info(b"x1")["death_message"]
    assert not of_type(actions, ae.RequestLease)


def test_infinite_restarts():
    cluster = Cluster(NODE_A)
    worker_id = cluster.start_actor(b"x1", max_restarts=-1)
    for _ in range(5):
        actions = cluster.handle(ae.WorkerDiedEvent(worker_id, "crash"))
        worker_id = cluster.bring_up(only(actions, ae.RequestLease))
    assert cluster.manager.info(b"x1")["num_restarts"] == 5


def test_worker_death_of_unknown_worker_is_ignored():
    assert Cluster(NODE_A).handle(ae.WorkerDiedEvent(b"stranger", "gone")) == []


def test_kill_no_restart_kills_worker_and_dies():
    cluster = Cluster(NODE_A)
    worker_id = cluster.start_actor(b"x1", max_restarts=5, name="svc")
    actions = cluster.handle(ae.KillActorEvent("k", b"x1", True))
    assert only(actions, ae.KillWorker) == ae.KillWorker(NODE_A, worker_id, am.KILLED_MESSAGE)
    assert only(actions, ae.PublishActor).record["death_message"] == am.KILLED_MESSAGE
    assert only(actions, ae.Reply) == ae.Reply("k", True, None)
    assert cluster.manager.named_info("svc", "ns") is None
    # The raylet's later report of that worker's death changes nothing.
    assert cluster.handle(ae.WorkerDiedEvent(worker_id, "killed")) == []


def test_kill_with_restart_allowed_restarts():
    cluster = Cluster(NODE_A)
    cluster.start_actor(b"x1", max_restarts=1)
    actions = cluster.handle(ae.KillActorEvent("k", b"x1", False))
    assert only(actions, ae.PublishActor).record["state"] == am.RESTARTING
    assert only(actions, ae.RequestLease)


def test_kill_pending_actor_cancels_its_lease_request():
    cluster = Cluster(NODE_A)
    lease = only(cluster.create(b"x1"), ae.RequestLease)
    actions = cluster.handle(ae.KillActorEvent("k", b"x1", True))
    assert only(actions, ae.CancelLease) == ae.CancelLease(NODE_A, lease.request_id)
    # A grant racing the cancel is handed straight back.
    _, actions = cluster.grant(lease)
    assert only(actions, ae.ReturnLease).lease_id == cluster.workers


def test_out_of_scope_kills_only_non_detached():
    cluster = Cluster(NODE_A)
    cluster.start_actor(b"x1")
    cluster.start_actor(b"x2", detached=True, name="keeper")
    cluster.handle(ae.ActorOutOfScopeEvent(b"x1"))
    assert cluster.handle(ae.ActorOutOfScopeEvent(b"x2")) == []
    assert cluster.state(b"x1") == am.DEAD and cluster.state(b"x2") == am.ALIVE
    assert "all references to the actor were removed" in cluster.manager.info(b"x1")["death_message"]


def test_job_finished_kills_that_jobs_non_detached_actors():
    cluster = Cluster(NODE_A)
    cluster.start_actor(b"x1")
    cluster.start_actor(b"x2", detached=True)
    cluster.start_actor(b"x3", job_id=JOB_2)
    actions = cluster.handle(ae.JobFinishedEvent(JOB_1))
    assert len(of_type(actions, ae.KillWorker)) == 1
    assert [cluster.state(a) for a in (b"x1", b"x2", b"x3")] == [am.DEAD, am.ALIVE, am.ALIVE]


def test_infeasible_actor_waits_warns_once_then_placed_when_node_fits():
    cluster = Cluster(NODE_A)
    actions = cluster.create(b"x1", resources={"GPU": 1})
    assert not of_type(actions, ae.RequestLease)
    assert "GPU" in only(actions, ae.Warn).message
    assert cluster.add_node(b"C" * 16, {"CPU": 8}) == []   # still infeasible, no second warning
    actions = cluster.add_node(NODE_B, {"CPU": 1, "GPU": 2})
    assert only(actions, ae.RequestLease).node_id == NODE_B


def test_default_actor_needs_one_cpu_to_be_placed():
    cluster = Cluster()
    cluster.add_node(NODE_A, {"CPU": 0, "memory": 10})
    actions = cluster.create(b"x1", resources={})
    assert not of_type(actions, ae.RequestLease) and of_type(actions, ae.Warn)
    lease = only(cluster.add_node(NODE_B, {"CPU": 1}), ae.RequestLease)
    assert (lease.node_id, lease.resources) == (NODE_B, {})


def test_node_choice_prefers_available_then_total_fit():
    cluster = Cluster()
    cluster.add_node(NODE_A, {"CPU": 4}, {"CPU": 0})
    cluster.add_node(NODE_B, {"CPU": 4}, {"CPU": 2})
    assert only(cluster.create(b"x1"), ae.RequestLease).node_id == NODE_B
    assert only(cluster.create(b"x2"), ae.RequestLease).node_id == NODE_B
    # B's view is now used up: the next goes to the first node that fits in total.
    assert only(cluster.create(b"x3"), ae.RequestLease).node_id == NODE_A


def test_node_death_reschedules_pending_lease_without_using_a_restart():
    cluster = Cluster(NODE_A)
    lease = only(cluster.create(b"x1"), ae.RequestLease)
    cluster.add_node(NODE_B, {"CPU": 4})
    actions = cluster.handle(ae.NodeDiedEvent(NODE_A, "gone"))
    assert only(actions, ae.RequestLease).node_id == NODE_B
    assert not of_type(actions, ae.CancelLease)   # nothing to tell a dead raylet
    assert cluster.state(b"x1") == am.PENDING_CREATION
    _, actions = cluster.grant(lease)           # a late grant from the dead node
    assert of_type(actions, ae.ReturnLease)


def test_node_death_kills_or_restarts_its_actors():
    cluster = Cluster(NODE_A, NODE_B)
    cluster.start_actor(b"x1", max_restarts=0)
    cluster.start_actor(b"x2", max_restarts=1)
    actions = cluster.handle(ae.NodeDiedEvent(NODE_A, "heartbeat lost"))
    assert not of_type(actions, ae.KillWorker)
    assert cluster.state(b"x1") == am.DEAD and cluster.state(b"x2") == am.RESTARTING
    assert "heartbeat lost" in cluster.manager.info(b"x1")["death_message"]
    assert only(actions, ae.RequestLease).node_id == NODE_B


def test_lease_failure_backs_off_then_gives_up():
    cluster = Cluster(NODE_A)
    lease = only(cluster.create(b"x1"), ae.RequestLease)
    for attempt in range(am.MAX_LEASE_FAILURES - 1):
        actions = cluster.handle(ae.LeaseFailedEvent(lease.request_id, 7, "no workers"))
        assert of_type(actions, ae.Warn) and not of_type(actions, ae.RequestLease)
        assert cluster.handle(ae.TickEvent()) == []     # not due yet
        cluster.now += am.LEASE_RETRY_CAP_S
        lease = only(cluster.handle(ae.TickEvent()), ae.RequestLease)
    actions = cluster.handle(ae.LeaseFailedEvent(lease.request_id, 7, "no workers"))
    assert cluster.state(b"x1") == am.DEAD
    assert "no workers" in cluster.manager.info(b"x1")["death_message"]


def test_named_actor_conflict_get_if_exists_and_listing():
    cluster = Cluster(NODE_A)
    cluster.start_actor(b"x1", name="svc")
    taken = only(cluster.create(b"x2", name="svc"), ae.Reply)
    assert not taken.ok and taken.payload == (
        GcsErrorCode.ACTOR_NAME_TAKEN, "Actor with name 'svc' already exists in the namespace ns")
    found = only(cluster.create(b"x3", name="svc", get_if_exists=True), ae.Reply)
    assert found.payload == {"actor_id": b"x1", "existing": True}
    assert cluster.manager.info(b"x3") is None
    cluster.create(b"x4", name="svc", namespace="other")
    assert cluster.manager.list_named(False, "ns") == [{"name": "svc", "namespace": "ns"}]
    assert len(cluster.manager.list_named(True, "")) == 2
    assert cluster.manager.named_info("svc", "ns")["actor_id"] == b"x1"
    cluster.handle(ae.KillActorEvent("k", b"x1", True))
    assert cluster.manager.named_info("svc", "ns") is None
    assert only(cluster.create(b"x5", name="svc"), ae.Reply).ok   # the name is free again


@pytest.mark.parametrize("bad_spec, needle", [
    ({"job_id": JOB_1, "creation_task": ()}, "actor_id"),
    ("not a dict", "spec dict"),
    (spec(b"x1", max_restarts=-5), "max_restarts"),
])
def test_bad_create_spec_is_a_bad_request(bad_spec, needle):
    reply = only(Cluster(NODE_A).handle(ae.CreateActorEvent("r", bad_spec)), ae.Reply)
    assert not reply.ok and reply.payload[0] == GcsErrorCode.BAD_REQUEST and needle in reply.payload[1]


def test_restore_redoes_unfinished_creations():
    cluster = Cluster(NODE_A)
    cluster.start_actor(b"alive", name="svc")
    lease = only(cluster.create(b"pending"), ae.RequestLease)
    worker_id, _ = cluster.grant(lease)
    restarted = am.ActorManager()
    actions = restarted.restore(dict(cluster.persisted))
    assert only(actions, ae.KillWorker).worker_id == worker_id
    assert only(actions, ae.SaveActor).record["worker_id"] is None
    assert restarted.named_info("svc", "ns")["state"] == am.ALIVE
    actions = restarted.handle(ae.NodeAddedEvent(NODE_A, {"CPU": 4}, {"CPU": 4}))
    assert only(actions, ae.RequestLease).actor_id == b"pending"
