"""Drives a running `orbital daemon` with niquests over HTTP/3 only: an
HTTP/3 client nobody on this project wrote. Run by tests/daemon.rs:

    python niquests_check.py BOUND_JSON_FILE

BOUND_JSON_FILE holds the daemon's `--json` start line. Exits non-zero,
saying which check failed, on the first failure.
"""
import json
import sys

import niquests

bound = json.loads(open(sys.argv[1]).readline())
host, port = bound["listening"].rsplit(":", 1)
token = open(bound["token_file"]).read().strip()
base = f"https://{host}:{port}"
# Trust exactly the daemon's self-signed certificate.
verify = bound["certificate"]

session = niquests.Session(disable_http1=True, disable_http2=True)
session.quic_cache_layer.add_domain(host, int(port))
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"FAILED: {what}")
    checks += 1


def request(method, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = session.request(method, base + path, headers=headers, verify=verify,
                               timeout=60, **kwargs)
    check(response.http_version == 30, f"{method} {path} came over HTTP/{response.http_version}")
    return response


health = request("GET", "/v1/health")
check(health.status_code == 200 and health.json()["status"] == "ok", f"health: {health.text}")

for given in (None, "wrong" * 13):
    refused = request("GET", "/v1/project", token=given)
    check(refused.status_code == 401, f"token {given!r}: {refused.status_code}")
    check(refused.json()["error"]["code"] == "unauthorized", refused.text)

listing = request("GET", "/v1/project", token=token)
check(listing.status_code == 200, f"project: {listing.status_code} {listing.text[:200]}")
names = {node["name"] for node in listing.json()["nodes"]}
check({"orders", "customers", "raw_orders"} <= names, f"project nodes: {sorted(names)}")

started = request("POST", "/v1/runs", token=token, json={"command": "build"})
check(started.status_code == 202, f"POST /v1/runs: {started.status_code} {started.text}")
run = started.json()["run"]


def follow(last_event_id=None):
    """The run's events as (id, name, data), to the end of the stream."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    response = request("GET", f"/v1/runs/{run}/events", token=token, headers=headers,
                       stream=True)
    check(response.status_code == 200, f"events: {response.status_code}")
    check(response.headers["content-type"].startswith("text/event-stream"),
          response.headers["content-type"])
    events, current = [], {}
    for line in response.iter_lines():
        line = line.decode() if isinstance(line, bytes) else line
        if not line:
            if "event" in current:
                events.append((int(current["id"]), current["event"], json.loads(current["data"])))
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return events


events = follow()
check(events[0][1] == "run_started", f"first event: {events[0]}")
check(events[-1][1] == "run_finished" and events[-1][2]["status"] == "succeeded",
      f"last event: {events[-1]}")
check([e[0] for e in events] == list(range(1, len(events) + 1)), "events are numbered from 1")
resumed = follow(last_event_id=5)
check(resumed == events[5:], "Last-Event-ID 5 resumes after event 5")

record = request("GET", f"/v1/runs/{run}", token=token)
check(record.json()["status"] == "succeeded", record.text[:200])

print(f"{checks} passed, 0 failed")
