"""Put/get bandwidth of the shared-memory store building blocks for one large numpy array.

Not a test: run `python bench/store_bandwidth.py [--mb 800] [--arena-gb 2] [--repeat 5]`.
Measures, in one process:
  - prefault_arena over the whole arena (what the raylet runs in a background thread);
  - put = pickle5 out-of-band + allocate + ArenaWriter.view + write_object: the first put
    into a region (this process maps its pages then) and repeated puts into the same
    region (pages already mapped: the steady state of a worker);
  - the same first put with a writer that does not pre-populate (plain page faults);
  - plain numpy copy bandwidth into an already-touched destination, for comparison;
  - get = map_readonly + read_object + pickle.loads (zero copy), and the pin release.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zray.store import (  # noqa: E402
    ArenaAllocator,
    ArenaWriter,
    create_arena,
    destroy_arena,
    encoded_size,
    map_readonly,
    prefault_arena,
    read_object,
    write_object,
)


def gbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e9:6.2f} GB/s ({seconds * 1e3:7.1f} ms)"


def put(writer: ArenaWriter, allocator: ArenaAllocator, value) -> tuple[int, int, dict]:
    t0 = time.perf_counter()
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    size = encoded_size(len(stream), [b.raw().nbytes for b in buffers])
    offset = allocator.allocate(size)
    t1 = time.perf_counter()
    dest = writer.view(offset, size)  # populates this process's pages on first use
    t2 = time.perf_counter()
    write_object(dest, stream, buffers)
    t3 = time.perf_counter()
    return offset, size, {"pickle": t1 - t0, "view": t2 - t1, "copy": t3 - t2, "total": t3 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=800, help="array size in MB (1e6 bytes)")
    parser.add_argument("--arena-gb", type=float, default=2.0, help="arena size in GiB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    nbytes = args.mb * 1_000_000
    capacity = int(args.arena_gb * 2**30)
    capacity -= capacity % 4096
    value = np.arange(nbytes // 8, dtype=np.uint64)  # also touches the source pages
    shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    session = tempfile.mkdtemp(prefix="zray-bench-", dir=shm_dir)
    path = os.path.join(session, "arena")
    try:
        create_arena(path, capacity)
        t0 = time.perf_counter()
        prefault_arena(path, capacity)
        t_prefault = time.perf_counter() - t0
        print(f"prefault_arena {capacity / 2**30:.2f} GiB:        {gbps(capacity, t_prefault)}")

        allocator = ArenaAllocator(capacity)
        writer = ArenaWriter(path, capacity)
        offset, size, first = put(writer, allocator, value)
        print(f"put first (populate+copy):      {gbps(nbytes, first['total'])}"
              f"  [pickle {first['pickle'] * 1e3:.2f} ms, populate {first['view'] * 1e3:.1f} ms,"
              f" copy {first['copy'] * 1e3:.1f} ms]")
        repeats = []
        for _ in range(args.repeat):
            allocator.free(offset)
            offset2, _, timing = put(writer, allocator, value)
            assert offset2 == offset, "the freed region should be reused"
            repeats.append(timing["total"])
        print(f"put repeated, same region:      {gbps(nbytes, statistics.median(repeats))}"
              f"  median of {args.repeat}; best {gbps(nbytes, min(repeats))}")

        # A second, fresh region (above the first object) through a writer that just faults.
        faulting = ArenaWriter(path, capacity, populate=False)
        offset_b, _, fault_first = put(faulting, allocator, value)
        print(f"put first, no populate (faults):{gbps(nbytes, fault_first['total'])}")
        allocator.free(offset_b)
        faulting.close()

        dst = np.empty_like(value)
        np.copyto(dst, value)
        copies = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            np.copyto(dst, value)
            copies.append(time.perf_counter() - t0)
        print(f"numpy copyto (warm dest):       {gbps(nbytes, statistics.median(copies))}")
        del dst

        released = []
        gets = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            stream, views = read_object(map_readonly(path, offset, size, lambda: released.append(1)))
            out = pickle.loads(stream, buffers=views)
            gets.append(time.perf_counter() - t0)
            assert out.flags.writeable is False and out.shape == value.shape
            del stream, views, out
        gc.collect()
        print(f"get (map_readonly+loads):       {statistics.median(gets) * 1e6:7.1f} us median"
              f"  (zero copy; pins released: {len(released)}/{args.repeat})")
        stream, views = read_object(map_readonly(path, offset, size, None))
        out = pickle.loads(stream, buffers=views)
        t0 = time.perf_counter()
        equal = np.array_equal(out, value)
        t_cmp = time.perf_counter() - t0
        print(f"read back + compare (faults in): {gbps(nbytes, t_cmp)}  equal={equal}")
        del stream, views, out
        writer.close()
    finally:
        destroy_arena(path)
        os.rmdir(session)


if __name__ == "__main__":
    main()
