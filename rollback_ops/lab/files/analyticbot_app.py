#!/usr/bin/env python3
"""AnalyticBot API stand-in for the rollback-ops lab (modelled on seed 003).

Reads its feature flags from the environment systemd gives it (EnvironmentFile=),
logs them at start the way the seed's runbook greps for them, and serves
GET /health with the flags *as this process sees them*, so a rollback can be
verified against the running process rather than the file on disk.

Fault injection for tests: FAULT_INJECTION=log_error logs an ERROR line at start;
FAULT_INJECTION=unhealthy makes /health answer 503.

Settings (seed 002 strategy 2's configuration): /etc/analyticbot/settings.yml, flat
``key: value`` lines read once at start and shown by /health as "settings". A
recommendation_model other than v1 (`lab-release deploy-bad-config` writes v2-experimental)
logs an ERROR at start and makes /health say "degraded". GET /recommendations?user=N answers
from a file cache, /var/cache/analyticbot/recommendations-<N>.json, written on a miss: stale
entries outlive a config rollback unless it clears them (`lab-cache clear`).

This file is release 1.4.0 (the good one) of the git work tree /opt/analyticbot/app that
make-releases.sh builds in the lab image; release 1.5.0 (the bad one) is this file with
VERSION = "1.5.0" and BROKEN = True. /health reports "maintenance": whether the maintenance
flag file exists (a code-level rollback turns it on first).
"""

import json
import logging
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FLAGS = ("ENABLE_ADVANCED_RECOMMENDATIONS", "ENABLE_TIME_WEIGHTING", "ENABLE_CONTENT_TYPE_ANALYSIS")
LOG_FILE = os.environ.get("LOG_FILE", "/var/log/analyticbot/production.log")
STARTED_AT = time.strftime("%Y-%m-%dT%H:%M:%S%z")
MAINTENANCE_FILE = "/srv/analyticbot/MAINTENANCE"
SETTINGS_FILE = os.environ.get("SETTINGS_FILE", "/etc/analyticbot/settings.yml")
CACHE_DIR = os.environ.get("CACHE_DIR", "/var/cache/analyticbot")
KNOWN_MODELS = ("v1",)
VERSION = "1.4.0"
BROKEN = False  # 1.5.0: logs an ERROR at start and /health says "degraded" (still 200)


def flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes", "on")


def config() -> dict[str, bool | str]:
    values: dict[str, bool | str] = {name: flag(name) for name in FLAGS}
    values["APP_MODE"] = os.environ.get("APP_MODE", "production")
    return values


def read_settings(path: str = SETTINGS_FILE) -> dict[str, str]:
    """Flat ``key: value`` lines (a YAML subset); comments and blank lines skipped."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                match = re.match(r"^([A-Za-z_][\w.-]*)\s*:\s*(.*?)\s*$", line.split(" #")[0])
                if match:
                    values[match.group(1)] = match.group(2).strip("\"'")
    except FileNotFoundError:
        pass
    return values


SETTINGS = read_settings()
MODEL = SETTINGS.get("recommendation_model", "v1")


def cache_entries() -> int:
    try:
        return sum(1 for name in os.listdir(CACHE_DIR) if name.endswith(".json"))
    except FileNotFoundError:
        return 0


def recommendations(user: str) -> dict[str, object]:
    """The user's recommendations, from the cache when an entry is there and fresh."""
    path = os.path.join(CACHE_DIR, f"recommendations-{user}.json")
    ttl = int(SETTINGS.get("cache_ttl_seconds", "300") or 300)
    try:
        if time.time() - os.path.getmtime(path) < ttl:
            with open(path, encoding="utf-8") as handle:
                return {**json.load(handle), "cached": True}
    except (OSError, ValueError):
        pass
    count = int(SETTINGS.get("max_recommendations", "5") or 5)
    result = {
        "user": user,
        "model": MODEL,
        "items": [f"post-{(int(user) * 7 + i) % 1000}" for i in range(count)],
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.makedirs(CACHE_DIR, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    os.replace(tmp, path)
    return {**result, "cached": False}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/recommendations":
            user = parse_qs(url.query).get("user", [""])[0]
            if not user.isdigit():
                self.send_error(400, "user=<number> is required")
                return
            self.answer(200, recommendations(user))
            return
        if url.path != "/health":
            self.send_error(404)
            return
        unhealthy = os.environ.get("FAULT_INJECTION") == "unhealthy"
        bad_model = MODEL not in KNOWN_MODELS
        self.answer(
            503 if unhealthy else 200,
            {
                "status": "degraded" if unhealthy or BROKEN or bad_model else "healthy",
                "service": "analyticbot",
                "version": VERSION,
                "maintenance": os.path.exists(MAINTENANCE_FILE),
                "started_at": STARTED_AT,
                "pid": os.getpid(),
                "config": config(),
                "settings": SETTINGS,
                "cache": {"entries": cache_entries()},
            },
        )

    def answer(self, code: int, data: dict[str, object]) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
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
    log.info("Settings from %s: %s", SETTINGS_FILE, SETTINGS)
    if MODEL not in KNOWN_MODELS:
        log.error("Recommendation model %s is not supported (known: %s)", MODEL, KNOWN_MODELS)
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
