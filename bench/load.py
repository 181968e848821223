"""HTTP load from a separate process: paced requests on N connections, slow loops and probes.

    python -m bench.load SPEC.json OUT.jsonl

SPEC: {"host", "port", "vhost", "duration", "rate", "connections", "keepalive", "slow_loops",
"probes": [[at_seconds, sleep_seconds], ...]}. Writes one JSON line per request:
{"t0", "t1", "path", "status", "kind", "release"}; kind is ok, 5xx, refused, reset, timeout or other.
Every loop is bounded by the duration (plus the 30 s request timeout).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from typing import Any

TIMEOUT = 30.0


def classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "reset"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    return "other"


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.results: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.start = spec.get("start_at") or time.time()
        self.end = self.start + spec["duration"]

    def request(self, conn: http.client.HTTPConnection | None, path: str) -> tuple[dict[str, Any], bool]:
        """One GET; returns the record and whether the connection can be kept."""
        s = self.spec
        t0 = time.time()
        own = conn is None
        c = conn or http.client.HTTPConnection(s["host"], s["port"], timeout=TIMEOUT)
        rec: dict[str, Any] = {"t0": t0, "path": path, "status": None, "release": None}
        keep = False
        try:
            c.request(
                "GET", path, headers={"Host": s["vhost"], **({} if s["keepalive"] and not own else {"Connection": "close"})}
            )
            r = c.getresponse()
            r.read()
            rec["status"] = r.status
            rec["release"] = r.getheader("X-Deploy-Release")
            rec["kind"] = "ok" if r.status < 500 else "5xx"
            keep = not r.will_close
        except Exception as exc:  # every failure is data here
            rec["kind"] = classify(exc)
            rec["error"] = repr(exc)[:120]
        finally:
            if own or not keep:
                c.close()
        rec["t1"] = time.time()
        with self.lock:
            self.results.append(rec)
        return rec, keep

    def paced(self, index: int) -> None:
        s = self.spec
        interval = s["connections"] / s["rate"]
        next_at = self.start + index * interval / s["connections"]
        time.sleep(max(0.0, self.start - time.time()))
        conn: http.client.HTTPConnection | None = None
        while next_at < self.end:
            delay = next_at - time.time()
            if delay > 0:
                time.sleep(delay)
            if s["keepalive"]:
                if conn is None:
                    conn = http.client.HTTPConnection(s["host"], s["port"], timeout=TIMEOUT)
                _, keep = self.request(conn, "/movie")
                if not keep:
                    conn.close()
                    conn = None
            else:
                self.request(None, "/movie")
            next_at += interval
        if conn is not None:
            conn.close()

    def slow_loop(self) -> None:
        time.sleep(max(0.0, self.start - time.time()))
        while time.time() < self.end - 2:
            self.request(None, "/slow?s=2")

    def probe(self, at: float, seconds: float) -> None:
        time.sleep(max(0.0, self.start + at - time.time()))
        self.request(None, f"/slow?s={seconds}")

    def run(self) -> list[dict[str, Any]]:
        s = self.spec
        threads = [threading.Thread(target=self.paced, args=(i,)) for i in range(s["connections"])]
        threads += [threading.Thread(target=self.slow_loop) for _ in range(s.get("slow_loops", 0))]
        threads += [threading.Thread(target=self.probe, args=(at, sec)) for at, sec in s.get("probes", [])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(s["duration"] + TIMEOUT + 10)
        return self.results


def main() -> int:
    spec = json.loads(open(sys.argv[1]).read())
    results = Load(spec).run()
    with open(sys.argv[2], "w") as out:
        for rec in results:
            out.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
