"""aiohttp's uvloop gunicorn worker, serving plain duplicates of gunicorn's listening sockets.

uvloop takes the file descriptor of a socket it serves and closes it itself
when the server closes; it then calls ``close()`` on the object it was given.
Given gunicorn's socket wrapper, that second close hits a dead descriptor and
gunicorn logs ``Error while closing socket [Errno 9] Bad file descriptor`` at
every stop. A plain ``socket.socket`` duplicate is one uvloop knows how to
hand over, and gunicorn's own object stays valid until the worker exits.
"""

from __future__ import annotations

from aiohttp.worker import GunicornUVLoopWebWorker


class UVLoopWorker(GunicornUVLoopWebWorker):
    def run(self) -> None:
        self.sockets = [listener.sock.dup() for listener in self.sockets]
        super().run()
