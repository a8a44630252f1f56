"""Profile tier 1 of the scale-out in one process: N agent messages already on a real
nats-server -> `nats` source -> `aggregate mode = "partial"` -> `nats` sink. Prints
messages/s, CPU per message and the top functions by own time (cProfile).

    python benches/profile_nats_tier1.py [messages] [values per message]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array

import nats

from revopipe import Pipeline
from revopipe.batch import Batch, MetricBatch
from revopipe.events import MetricKind
from revopipe.wire.batch import encode_batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(n_msg: int, size: int) -> None:
    store = tempfile.mkdtemp()
    port = free_port()
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    argv = [binary, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.5)
        url = f"nats://127.0.0.1:{port}"
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="REVOPIPE", subjects=["revopipe.>"])
        t0 = time.time_ns()
        metrics = MetricBatch(
            ["lat"] * size,
            bytes([MetricKind.HISTOGRAM]) * size,
            array("d", [(i % 1000 + 1) / 1000 for i in range(size)]),
            ["s"] * size,
            array("q", [t0] * size),
            [(("route", "/a"),)] * size,
        )
        data = encode_batch(Batch(metrics))
        for i in range(n_msg):
            await js.publish("revopipe.data.a", data, headers={"Nats-Msg-Id": f"m{i}"})
        pipeline = Pipeline.from_dict(
            {
                "pipeline": {"data_dir": store},
                "sources": {
                    "ingest": {"type": "nats", "url": url, "subject": "revopipe.data.>"},
                },
                "processors": {
                    "partial": {"type": "aggregate", "inputs": ["ingest"], "mode": "partial"},
                },
                "sinks": {
                    "partials": {
                        "type": "nats",
                        "inputs": ["partial"],
                        "url": url,
                        "subject": "revopipe.partials",
                    },
                },
            }
        )
        prof = cProfile.Profile()
        async with pipeline.running():
            start, cpu0 = time.perf_counter(), time.process_time()
            prof.enable()
            while True:
                try:
                    info = await js.consumer_info("REVOPIPE", "revopipe")
                except nats.js.errors.NotFoundError:  # the source has not created it yet
                    info = None
                if info is not None and info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                await asyncio.sleep(0.05)
            prof.disable()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        await nc.close()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(store, ignore_errors=True)
    print(
        f"{n_msg} messages x {size} values: {wall:.2f} s, {n_msg / wall:.0f} messages/s, "
        f"{n_msg * size / wall:,.0f} values/s, {cpu / n_msg * 1e3:.2f} ms CPU per message"
    )
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [500, 1000][len(args) :])))
