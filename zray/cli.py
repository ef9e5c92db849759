"""The ``zray`` command: start / stop / status / memory / bench."""
from __future__ import annotations

import json
import os
import sys

import click

from .node import launcher


@click.group()
def main():
    """zray: Ray Core on ZeroMQ."""


@main.command()
@click.option("--head", is_flag=True, help="Start the head node (GCS + raylet).")
@click.option("--address", default=None, help="GCS address host:port of the head to join.")
@click.option("--port", type=int, default=6380, show_default=True, help="GCS port (head).")
@click.option("--node-ip-address", default="127.0.0.1", show_default=True,
              help="Address this node's servers listen on and advertise.")
@click.option("--num-cpus", type=float, default=None)
@click.option("--num-gpus", type=float, default=0)
@click.option("--resources", default="{}", help='Custom resources as JSON, e.g. \'{"TPU": 2}\'.')
@click.option("--object-store-memory", type=int, default=None)
def start(head, address, port, node_ip_address, num_cpus, num_gpus, resources, object_store_memory):
    """Start zray processes on this host (they outlive this command)."""
    try:
        custom = json.loads(resources)
        if not isinstance(custom, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise click.BadParameter(f"--resources must be a JSON object: {exc}")
    if not head and not address:
        raise click.UsageError("give --head to start a head node or --address to join one")
    if head and address:
        raise click.UsageError("--head and --address are exclusive")
    session_dir = launcher.make_session_dir()
    cpus = num_cpus if num_cpus is not None else os.cpu_count()
    if head:
        node = launcher.start_node(head=True, session_dir=session_dir, num_cpus=cpus,
                                   num_gpus=num_gpus, resources=custom,
                                   object_store_memory=object_store_memory,
                                   node_ip=node_ip_address, gcs_port=port)
    else:
        gcs_address = address if address.startswith("tcp://") else f"tcp://{address}"
        pub = launcher.query_pub_address(gcs_address)
        node = launcher.start_node(head=False, session_dir=session_dir, num_cpus=cpus,
                                   num_gpus=num_gpus, resources=custom,
                                   object_store_memory=object_store_memory,
                                   node_ip=node_ip_address, gcs_address=gcs_address,
                                   gcs_pub_address=pub)
    try:
        info = node.wait_ready(timeout=30)
    except (RuntimeError, TimeoutError) as exc:
        node.stop()
        raise click.ClickException(str(exc))
    launcher.record_cluster(session_dir, info, [p.pid for p in node.procs])
    click.echo(f"zray node started (session {session_dir}).")
    click.echo(f"GCS address: {info['gcs_address']}")
    click.echo("Connect with zray.init(address='auto'); stop with `zray stop`.")


@main.command()
def stop():
    """Stop the zray processes started on this host by `zray start`."""
    stopped = launcher.stop_recorded_clusters()
    click.echo(f"Stopped {stopped} zray process(es).")


@main.command()
@click.option("--address", default="auto")
def status(address):
    """Show the nodes, resources and placement groups of the running cluster."""
    import zray
    from .util.placement_group import placement_group_table
    try:
        zray.init(address=address)
    except (ConnectionError, FileNotFoundError, TimeoutError) as exc:
        raise click.ClickException(f"no running cluster found: {exc}")
    try:
        nodes = zray.nodes()
        total = zray.cluster_resources()
        available = zray.available_resources()
        groups = [g for g in placement_group_table().values() if g["state"] != "REMOVED"]
    finally:
        zray.shutdown()
    click.echo(f"{len([n for n in nodes if n['Alive']])} node(s) alive")
    for node in nodes:
        click.echo(f"  {node['NodeID'][:12]} {node['NodeManagerAddress']} "
                   f"{'ALIVE' if node['Alive'] else 'DEAD'}")
    reserved: dict = {}   # what CREATED groups hold, by plain resource name (as `ray status`)
    for group in groups:
        if group["state"] == "CREATED":
            for bundle in group["bundles"].values():
                for name, amount in bundle.items():
                    reserved[name] = reserved.get(name, 0) + amount
    click.echo("Resources (available / total):")
    for name in sorted(total):
        if name.startswith("node:") or "_group_" in name:   # a group's own names: below
            continue
        held = f" ({reserved[name]:g} reserved in placement groups)" if reserved.get(name) else ""
        click.echo(f"  {name}: {available.get(name, 0):g} / {total[name]:g}{held}")
    click.echo(f"Placement groups: {len(groups)}")
    for group in groups:
        bundles = [group["bundles"][i] for i in sorted(group["bundles"])]
        name = f" name={group['name']}" if group["name"] else ""
        click.echo(f"  {group['placement_group_id'][:12]} {group['state']} {group['strategy']}"
                   f"{name} bundles={bundles}")


@main.command()
@click.option("--address", default="auto")
@click.option("--stats-only", is_flag=True, help="Only the per-node totals.")
@click.option("--limit", default=100, show_default=True, help="Rows of objects to print.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def memory(address, stats_only, limit, as_json):
    """Objects in the cluster: size, owner, where, references; node totals."""
    import zray
    from .util.memory import memory_summary
    zray.init(address=address)
    try:
        if as_json:
            click.echo(json.dumps(memory_summary(as_dict=True), indent=1))
        else:
            click.echo(memory_summary(stats_only=stats_only, limit=limit))
    finally:
        zray.shutdown()


_LISTABLE = ("actors", "nodes", "placement-groups", "jobs", "workers", "objects", "tasks")


@main.command(name="list")
@click.argument("resource", type=click.Choice(_LISTABLE))
@click.option("--address", default="auto")
@click.option("--filter", "filters", multiple=True,
              help='KEY=VALUE or KEY!=VALUE, e.g. --filter "state=ALIVE" (repeatable).')
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_command(resource, address, filters, limit, as_json):
    """List the cluster's actors, nodes, placement groups, jobs, workers, objects or tasks."""
    import zray
    from .util import state
    parsed = []
    for text in filters:
        key, predicate, value = text.partition("!=") if "!=" in text else text.partition("=")
        if not predicate or not key:
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE or KEY!=VALUE",
                                     param_hint="--filter")
        parsed.append((key.strip(), predicate, value.strip()))
    try:
        zray.init(address=address)
    except (ConnectionError, FileNotFoundError, TimeoutError) as exc:
        raise click.ClickException(f"no running cluster found: {exc}")
    try:
        rows = getattr(state, "list_" + resource.replace("-", "_"))(filters=parsed, limit=limit)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    finally:
        zray.shutdown()
    if as_json:
        click.echo(json.dumps([row.asdict() for row in rows], indent=1, default=str))
        return
    click.echo(f"{len(rows)} {resource}")
    for row in rows:
        click.echo("  " + "  ".join(f"{k}={v}" for k, v in row.asdict().items()))


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--quick", is_flag=True, help="Short runs: the whole suite in under a minute.")
@click.option("--compare", multiple=True, help="Also run the workloads through this module (ray).")
@click.option("--json", "json_path", default=None, help="Write the results to this file.")
@click.option("--only", default=None, help="Run only workloads whose name contains this.")
@click.option("--primary", default="zray", hidden=True)
def bench(quick, compare, json_path, only, primary):
    """Run Ray's microbenchmark workloads on an embedded cluster."""
    from zray_bench.cli import run_bench
    sys.exit(run_bench(quick=quick, compare=list(compare), json_path=json_path, only=only,
                       primary=primary))


if __name__ == "__main__":
    main()
