"""Free loopback ports for the Python tests (the chart's and the scripts') and the benches
(benches/lab.py)."""

import socket

_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free a moment ago on 127.0.0.1 and not given out before by this process: the
    kernel may hand a just-released port to the next bind, so two ports asked for in a row
    could otherwise be the same one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
