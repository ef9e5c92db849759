"""The GCS (global control service): the cluster's one source of truth.

One process per cluster (``python -m zray.gcs.server``) owning the node table
and health checks, the actor table (it drives actor creation through the same
lease protocol as any owner), the job table and the internal KV, all written
through to LMDB (DESIGN.md sections 7 and 9).

Modules::

    errors         GcsErrorCode (the int in a failed GcsReply), GcsError
    tables         the LMDB env: nodes, actors, jobs, kv, meta
    node_manager   node records, heartbeats, cluster resources (pure)
    actor_manager  actor lifecycle: events in, actions out (pure)
    server         the process: sockets, IO loop, request handlers
    client         GcsClient, a small synchronous client for tools and tests
"""
