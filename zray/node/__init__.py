"""Per-host processes: raylet (leases, worker pool, object store), fork server, launcher."""
