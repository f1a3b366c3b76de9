"""A relay between a client and PostgreSQL that can cut the link in the middle of a
conversation, as a cut inter-site link does (no FIN, no RST: silence)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingRelay:
    """127.0.0.1:port -> the server; ``cut_after(marker)``: once a request containing
    ``marker`` has been forwarded, nothing more passes, either way."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.marker: bytes | None = None
        self.cut = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def cut_after(self, marker: bytes) -> None:
        self.marker = marker

    def cut_now(self) -> None:
        """The link goes silent both ways: bytes in flight and new connections' bytes vanish
        (a connection is accepted, nothing passes: its handshake times out)."""
        self.cut.set()

    def reset(self) -> None:
        """The link is back, but the connections that lived through the cut are broken (as TCP
        connections are after a long silence): they are aborted; new ones pass."""
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()
        self.cut.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        for src, dst, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(src, dst, upstream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    upstream: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if self.cut.is_set():
                    continue  # the link is down: bytes vanish
                dst.write(data)
                await dst.drain()
                if upstream and self.marker is not None and self.marker in data:
                    self.cut.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
