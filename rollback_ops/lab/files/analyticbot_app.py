#!/usr/bin/env python3
"""AnalyticBot API stand-in for the rollback-ops lab (modelled on seed 003).

Reads its feature flags from the environment systemd gives it (EnvironmentFile=),
logs them at start the way the seed's runbook greps for them, and serves
GET /health with the flags *as this process sees them*, so a rollback can be
verified against the running process rather than the file on disk.

Fault injection for tests: FAULT_INJECTION=log_error logs an ERROR line at start;
FAULT_INJECTION=unhealthy makes /health answer 503.

This file is release 1.4.0 (the good one) of the git work tree /opt/analyticbot/app that
make-releases.sh builds in the lab image; release 1.5.0 (the bad one) is this file with
VERSION = "1.5.0" and BROKEN = True. /health reports "maintenance": whether the maintenance
flag file exists (a code-level rollback turns it on first).
"""

import json
import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAGS = ("ENABLE_ADVANCED_RECOMMENDATIONS", "ENABLE_TIME_WEIGHTING", "ENABLE_CONTENT_TYPE_ANALYSIS")
LOG_FILE = os.environ.get("LOG_FILE", "/var/log/analyticbot/production.log")
STARTED_AT = time.strftime("%Y-%m-%dT%H:%M:%S%z")
MAINTENANCE_FILE = "/srv/analyticbot/MAINTENANCE"
VERSION = "1.4.0"
BROKEN = False  # 1.5.0: logs an ERROR at start and /health says "degraded" (still 200)


def flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes", "on")


def config() -> dict[str, bool | str]:
    values: dict[str, bool | str] = {name: flag(name) for name in FLAGS}
    values["APP_MODE"] = os.environ.get("APP_MODE", "production")
    return values


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_error(404)
            return
        unhealthy = os.environ.get("FAULT_INJECTION") == "unhealthy"
        body = json.dumps(
            {
                "status": "degraded" if unhealthy or BROKEN else "healthy",
                "service": "analyticbot",
                "version": VERSION,
                "maintenance": os.path.exists(MAINTENANCE_FILE),
                "started_at": STARTED_AT,
                "pid": os.getpid(),
                "config": config(),
            }
        ).encode()
        self.send_response(503 if unhealthy else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    os.makedirs(os.path.dirname(LOG_FILE), exist_ok=True)
    logging.basicConfig(
        filename=LOG_FILE, level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s"
    )
    log = logging.getLogger("analyticbot")
    values = config()
    log.info(
        "Feature flags - Advanced: %s, Time-weighting: %s, Content-type: %s",
        values["ENABLE_ADVANCED_RECOMMENDATIONS"],
        values["ENABLE_TIME_WEIGHTING"],
        values["ENABLE_CONTENT_TYPE_ANALYSIS"],
    )
    log.info("App mode: %s", values["APP_MODE"])
    if not values["ENABLE_ADVANCED_RECOMMENDATIONS"]:
        log.info("Using SIMPLE query (legacy mode)")
    log.info("AnalyticBot %s starting", VERSION)
    if BROKEN:
        log.error("Recommendation engine %s: content-type model failed to load", VERSION)
    if os.environ.get("FAULT_INJECTION") == "log_error":
        log.error("Injected fault: recommendation engine failed to start")
    address = os.environ.get("BIND_ADDRESS", "127.0.0.1")
    port = int(os.environ.get("PORT", "10300"))
    server = ThreadingHTTPServer((address, port), Handler)
    log.info("Listening on %s:%d", address, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
