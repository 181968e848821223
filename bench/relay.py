"""A TCP relay that holds every chunk for a fixed delay in each direction: a slow link in user space.

This kernel has no netem; `DelayRelay(("127.0.0.1", 22), 0.025)` gives a ~50 ms RTT path to port 22.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time


class DelayRelay:
    def __init__(self, target: tuple[str, int], delay: float, bind: str = "127.0.0.1") -> None:
        self.target = target
        self.delay = delay
        self.bind = bind
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DelayRelay:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.bind, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay * 2)  # the SYN / SYN-ACK round trip
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the relay is stopping

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.delay, data))
                if not data:
                    break
            await task
        except (ConnectionError, OSError):
            task.cancel()
        finally:
            try:
                writer.close()
            except Exception:
                pass


def measure_rtt(delay: float, samples: int = 5) -> float:
    """Median time of a 1-byte echo through a DelayRelay with this delay (after the connect)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    relay = DelayRelay(srv.getsockname(), delay).start()
    try:
        times = []
        with socket.create_connection(("127.0.0.1", relay.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(samples):
                t = time.perf_counter()
                s.sendall(b"x")
                s.recv(1)
                times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]
    finally:
        relay.stop()
        srv.close()
