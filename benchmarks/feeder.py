"""A Polygon-protocol WebSocket feeder for benchmarks: replays pre-serialised frames as fast as the client
reads them, or at a fixed event rate. Runs as its own process.

    python -m benchmarks.feeder --frames FILE --api-key K [--rate EVENTS_PER_S]

FILE holds one JSON array (a frame of events) per line. Prints ``READY ws://127.0.0.1:PORT/stocks``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.server import ServerConnection, serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (0 = as fast as read)")
    args = parser.parse_args()
    with open(args.frames, encoding="utf-8") as fh:
        frames = [line.rstrip("\n") for line in fh if line.strip()]
    sizes = [line.count('"ev"') for line in frames]

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
        auth = json.loads(await ws.recv())
        if auth.get("params") != args.api_key:
            await ws.send(json.dumps([{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]))
            return
        await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
        await ws.recv()  # subscribe
        await ws.send(json.dumps([{"ev": "status", "status": "success", "message": "subscribed"}]))
        start = time.monotonic()
        sent = 0
        for frame, size in zip(frames, sizes, strict=True):
            if args.rate:
                delay = start + sent / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(frame)
            sent += size
        await ws.send(json.dumps([{"ev": "status", "status": "session_end", "message": "feeder done"}]))
        await ws.close()

    async def run() -> None:
        async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"READY ws://127.0.0.1:{port}/stocks", flush=True)
            await asyncio.Future()

    asyncio.run(run())


if __name__ == "__main__":
    main()
