#!/usr/bin/env python3
"""Report recovery-layer timings to comfy-sentinel (POST /api/v1/events).

A tiny retry decorator that times itself: the time spent inside the operation (all
attempts) apart from the time the recovery layer adds around it (backoff sleeps and its
own bookkeeping), and posts one `operation` event per call. Standard library only.

    reporter = Reporter("http://127.0.0.1:9188", token=os.environ.get("SENTINEL_INGEST_TOKEN"))

    @reporter.retry("load_model", attempts=3, backoff=0.05, retry_on=(TimeoutError,))
    def load_model(path): ...

The sidecar turns the events into recovery_operations_total{operation,outcome},
recovery_overhead_seconds_total / recovery_operation_seconds_total (the overhead ratio),
recovery_duration_seconds (time to recover) and friends. Events are buffered and sent in
batches (`flush()`; `close()` at exit); a failed post is logged and dropped, never raised
into the application. `--demo URL` runs a few operations against a sidecar.
"""

import argparse
import functools
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.error
import urllib.request

__all__ = ["Reporter"]


class Reporter:
    """Buffers events and posts them as one JSON array per flush."""

    def __init__(self, url, token=None, hmac_secret=None, batch_size=100, timeout=2.0):
        self.endpoint = url.rstrip("/") + "/api/v1/events"
        self.token = token
        self.hmac_secret = hmac_secret
        self.batch_size = batch_size
        self.timeout = timeout
        self._buffer = []
        self._lock = threading.Lock()

    # -- sending -----------------------------------------------------------------
    def emit(self, event):
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()

    def flush(self):
        """Posts the buffered events; returns the HTTP status (None when nothing to send
        or the sidecar was unreachable)."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return None
        body = json.dumps(batch, separators=(",", ":")).encode()
        req = urllib.request.Request(self.endpoint, data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if self.hmac_secret:
            ts = str(int(time.time()))
            mac = hmac.new(self.hmac_secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
            req.add_header("X-Sentinel-Timestamp", ts)
            req.add_header("X-Sentinel-Signature", "sha256=" + mac.hexdigest())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            print("recovery_reporter: sidecar answered %d: %s" % (e.code, e.read()[:300]), file=sys.stderr)
            return e.code
        except OSError as e:
            print("recovery_reporter: cannot reach sidecar: %s" % e, file=sys.stderr)
            return None

    close = flush

    # -- other event types ---------------------------------------------------------
    def breaker(self, name, state, previous=None):
        """Reports a circuit breaker's state: "closed", "half_open" or "open"."""
        event = {"type": "circuit_breaker", "name": name, "state": state, "timestamp": time.time()}
        if previous is not None:
            event["from"] = previous
        self.emit(event)

    def heartbeat(self, name, ok=True):
        """Reports a scheduled job's run (dead man's switch)."""
        self.emit({"type": "heartbeat", "name": name, "status": "success" if ok else "failure", "timestamp": time.time()})

    def quality(self, workflow, metric, value):
        """Reports a quality score of one output."""
        self.emit({"type": "quality", "workflow": workflow, "metric": metric, "value": float(value)})

    # -- the decorator -----------------------------------------------------------
    def retry(self, operation, attempts=3, backoff=0.1, factor=2.0, retry_on=(Exception,)):
        """Retries the wrapped function up to `attempts` times with exponential backoff
        and reports how the call went."""

        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                in_operation = 0.0
                first_failure = None
                last_error = None
                delay = backoff
                for attempt in range(1, attempts + 1):
                    t0 = time.perf_counter()
                    try:
                        result = fn(*args, **kwargs)
                    except retry_on as e:
                        in_operation += time.perf_counter() - t0
                        last_error = e
                        if first_failure is None:
                            first_failure = time.perf_counter()
                        if attempt < attempts:
                            time.sleep(delay)
                            delay *= factor
                        continue
                    in_operation += time.perf_counter() - t0
                    self._report(operation, started, in_operation, attempt, "success" if attempt == 1 else "recovered", first_failure, None)
                    return result
                self._report(operation, started, in_operation, attempts, "failed", first_failure, last_error)
                raise last_error

            return wrapper

        return decorate

    def _report(self, operation, started, in_operation, attempts, outcome, first_failure, error):
        now = time.perf_counter()
        event = {
            "type": "operation",
            "operation": operation,
            "duration_seconds": round(in_operation, 6),
            # Everything the wrapper spent outside the operation: backoff and bookkeeping.
            "overhead_seconds": round(max(0.0, (now - started) - in_operation), 6),
            "attempts": attempts,
            "outcome": outcome,
        }
        if first_failure is not None:
            event["recovery_seconds"] = round(now - first_failure, 6)
        if error is not None or outcome == "recovered":
            event["error_class"] = type(error).__name__ if error is not None else "transient"
        self.emit(event)


def demo(url, token=None, hmac_secret=None):
    """Three operations (a first-try success, a recovery, a failure), a breaker opening,
    a heartbeat and a quality score."""
    reporter = Reporter(url, token=token, hmac_secret=hmac_secret)
    calls = {"n": 0}

    @reporter.retry("demo_ok", attempts=3, backoff=0.01)
    def ok():
        return 1

    @reporter.retry("demo_flaky", attempts=3, backoff=0.01, retry_on=(TimeoutError,))
    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError("not yet")
        return 2

    @reporter.retry("demo_broken", attempts=2, backoff=0.01, retry_on=(ConnectionError,))
    def broken():
        raise ConnectionError("down")

    ok()
    flaky()
    try:
        broken()
    except ConnectionError:
        pass
    reporter.breaker("demo-breaker", "open", previous="closed")
    reporter.heartbeat("demo-job")
    reporter.quality("demo-workflow", "clip_score", 0.31)
    return reporter.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", metavar="URL", required=True, help="sidecar base URL, e.g. http://127.0.0.1:9188")
    p.add_argument("--token", help="ingest bearer token")
    p.add_argument("--hmac-secret", help="ingest HMAC secret")
    a = p.parse_args()
    status = demo(a.demo, token=a.token, hmac_secret=a.hmac_secret)
    print("posted: %s" % status)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
