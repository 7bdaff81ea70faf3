"""`shardserve serve` as a child process, for the benchmark scripts in this folder."""
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc):
    """SIGTERM, then SIGKILL if the process has not exited within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


class ServeProcess:
    """`shardserve serve --model=MODEL --port=0 FLAGS...` in the background until stop().

    Waits (up to 300 s) for the ready line and keeps the address it names. When `metrics_port`
    is given, the cluster serves /metrics there (coordinator) and on the ports after it (one per
    worker), and metric_sum() reads the workers'.
    """

    def __init__(self, shardserve, model, flags, metrics_port=None, num_workers=0):
        self.metrics_port = metrics_port
        self.num_workers = num_workers
        if metrics_port is not None:
            flags = flags + [f"--metrics_port={metrics_port}"]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="shardserve-serve-", delete=False)
        self.proc = subprocess.Popen(
            [shardserve, "serve", f"--model={model}", "--port=0"] + flags,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        self.address = None
        while time.time() < deadline and self.address is None:
            if self.proc.poll() is not None:
                raise RuntimeError("shardserve serve exited:\n" + open(self.log.name).read())
            m = re.search(r"ready: .* on (127\.0\.0\.1:\d+)", open(self.log.name).read())
            if m:
                self.address = m.group(1)
            time.sleep(0.1)
        if self.address is None:
            self.stop()
            raise RuntimeError("shardserve serve did not become ready")

    def metric_sum(self, name):
        """Sum of a metric's samples over every worker's /metrics."""
        total = 0.0
        for i in range(self.num_workers):
            url = f"http://127.0.0.1:{self.metrics_port + 1 + i}/metrics"
            try:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        stop_process(self.proc)
