"""The README's first command, scripts/run.sh, as a newcomer runs it: on a machine where no
exporter answers, the first scrape is a real node_exporter page, not a 502; where one answers,
it is used and left running. Run after the Rust tests, which build the release binary run.sh
starts (run.sh's own `cargo build` then finds nothing to do)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import pytest
from ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class RunSh:
    """scripts/run.sh on free ports, stopped (SIGTERM) at the end."""

    def __init__(self, exporter_port: int):
        self.ports = {"exporter": exporter_port, "proxy": free_port(), "metrics": free_port()}
        env = dict(os.environ, SERVER_PORT=str(exporter_port), LISTEN_ADDRESS="127.0.0.1",
                   LISTEN_PORT=str(self.ports["proxy"]), METRICS_PORT=str(self.ports["metrics"]))
        self.log = open(ROOT / "target" / f"run-sh-{exporter_port}.log", "w+")
        self.process = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        start = time.time()
        while not answers(self.ports["proxy"]):
            assert self.process.poll() is None, f"run.sh ended: {self.output()}"
            assert time.time() - start < 300, f"the tunnel did not listen: {self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@pytest.fixture
def no_exporter_port():
    port = free_port()
    assert not answers(port)
    return port


def test_a_fresh_machine_scrapes_a_real_node_exporter(no_exporter_port):
    run = RunSh(no_exporter_port)
    try:
        status, page = get(f"http://127.0.0.1:{run.ports['proxy']}/metrics")
        assert status == 200, page
        assert "node_cpu_seconds_total" in page
        out = run.output()
        assert "so prometheus-node-exporter runs there until the tunnel stops" in out
        assert f"curl http://127.0.0.1:{run.ports['proxy']}/metrics" in out
        assert get(f"http://127.0.0.1:{run.ports['metrics']}/healthz")[0] == 200
    finally:
        code = run.stop()
    assert code in (0, 143), run.output()
    # The node_exporter it started stopped with it.
    start = time.time()
    while answers(no_exporter_port) and time.time() - start < 10:
        time.sleep(0.1)
    assert not answers(no_exporter_port), "the node_exporter run.sh started outlived it"


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"my_own_exporter_up 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_exporter_that_already_answers_is_used_and_left_alone():
    server = HTTPServer(("127.0.0.1", 0), Page)
    Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    run = RunSh(port)
    try:
        status, page = get(f"http://127.0.0.1:{run.ports['proxy']}/metrics")
        assert (status, page) == (200, "my_own_exporter_up 1\n")
        assert "already answers" in run.output()
        assert "prometheus-node-exporter runs" not in run.output()
    finally:
        run.stop()
    assert answers(port), "the user's own exporter was touched"
    server.shutdown()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
