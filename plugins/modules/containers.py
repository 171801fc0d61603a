#!/usr/bin/python
"""Rebuild an app's Docker images on the host and recreate its compose services."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: containers
short_description: Check, stop, rebuild and bring up an app's images and compose services
description:
  - Talks to the host's Docker engine with the docker SDK (python3-docker on the host) and runs
    compose with C(docker compose) or C(docker-compose), whichever the host has.
  - Each image is labelled with a hash of its build context (files, modes, Dockerfile, build
    args, honouring C(.dockerignore)); an image whose label matches the context is current and
    is not rebuilt, so a second rollback changes nothing. C(nocache) applies when it is rebuilt.
  - C(state=checked) is read-only. It reports every problem at once (engine not answering,
    missing context or Dockerfile, no compose) and whether anything is stale, in C(needed).
    Stale is an image older than its context, or a service whose container is missing, not
    running, or runs another image than its tag's.
  - C(state=stopped) stops the services' running containers (C(compose stop -t drain_timeout)).
  - C(state=built) builds the stale images.
  - C(state=up) runs C(compose up -d --no-build) for the services, then watches their
    containers for I(settle) seconds. Each must be running, not restarting, with the same
    start time, and its log since the start must not match I(log_error_pattern).
requirements:
  - the docker SDK for Python on the host (C(python3-docker))
  - C(docker compose) or C(docker-compose) on the host, for I(project_dir)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Checks everything and says what would change; builds, stops and starts nothing.
options:
  state:
    type: str
    choices: [checked, stopped, built, up]
    default: checked
    description: What to do.
  images:
    type: list
    elements: dict
    default: []
    description:
      - Images to build, each with C(context) (directory), C(tag), and optionally
        C(dockerfile) (relative to context, default Dockerfile), C(nocache) (bool),
        C(buildargs) (dict).
  project_dir:
    type: path
    default: ""
    description: The compose project's directory (compose runs there); empty for no compose.
  services:
    type: list
    elements: str
    default: []
    description: Compose services of the app; empty means all of the project's.
  drain_timeout:
    type: int
    default: 30
    description: Seconds compose gives a container to stop before killing it.
  settle:
    type: int
    default: 5
    description: Seconds the containers must keep running, unrestarted, after C(up).
  log_error_pattern:
    type: str
    default: ""
    description: A regular expression no container log line since its start may match.
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Check whether the images or the services are stale
  rollback_ops.rollback.containers:
    images:
      - context: /srv/analyticbot/app
        tag: analyticbot:rollback
        buildargs: {RELEASE: v1.4.2}
    project_dir: /srv/analyticbot
    services: [api, worker]
  register: containers_check

- name: Rebuild the stale images
  rollback_ops.rollback.containers:
    state: built
    images:
      - context: /srv/analyticbot/app
        tag: analyticbot:rollback
        buildargs: {RELEASE: v1.4.2}

- name: Bring the services up and watch them for 10 seconds
  rollback_ops.rollback.containers:
    state: up
    project_dir: /srv/analyticbot
    services: [api, worker]
    settle: 10
    log_error_pattern: "Traceback|ERROR"
"""

RETURN = r"""
needed:
  description: Whether an image is stale or a service is not running its current image.
  type: bool
  returned: always
reasons:
  description: What is stale, one line each.
  type: list
  elements: str
  returned: always
problems:
  description: Every problem found (the module fails when there is any).
  type: list
  elements: str
  returned: always
images:
  description: Per tag, C(id) before and after, C(context) hash, C(built).
  type: dict
  returned: always
containers:
  description: Per service, its containers' id, image, status, restart count.
  type: dict
  returned: always
engine:
  description: The Docker engine's version.
  type: str
  returned: when the engine answers
"""

import calendar
import hashlib
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.compose import describe
from ansible_collections.rollback_ops.rollback.plugins.module_utils.files import update_digest

try:
    import docker
    from docker.utils.build import exclude_paths

    HAS_DOCKER = True
except ImportError:  # reported as a problem by the module
    HAS_DOCKER = False

LABEL = "org.rollback-ops.context"


def context_hash(image):
    """A hash of what a build would send: files, modes, Dockerfile name, build args."""
    root = image["context"]
    dockerfile = image.get("dockerfile") or "Dockerfile"
    patterns = []
    ignore = os.path.join(root, ".dockerignore")
    if os.path.isfile(ignore):
        with open(ignore) as handle:
            patterns = [
                line.strip() for line in handle if line.strip() and not line.startswith("#")
            ]
    digest = hashlib.sha256()
    digest.update(("dockerfile=%s\n" % dockerfile).encode())
    for key, value in sorted((image.get("buildargs") or {}).items()):
        digest.update(("arg %s=%s\n" % (key, value)).encode())
    for rel in sorted(exclude_paths(root, patterns, dockerfile=dockerfile)):
        full = os.path.join(root, rel)
        if os.path.islink(full):
            digest.update(("link %s %s\n" % (rel, os.readlink(full))).encode())
        elif os.path.isfile(full):
            digest.update(("file %s %o\n" % (rel, os.stat(full).st_mode & 0o7777)).encode())
            update_digest(digest, full)
        elif os.path.isdir(full):
            digest.update(("dir %s\n" % rel).encode())
    return digest.hexdigest()


class Compose:
    def __init__(self, module, project_dir):
        self.module = module
        self.project_dir = project_dir
        self.argv = self._find()

    def _find(self):
        docker_bin = self.module.get_bin_path("docker")
        if docker_bin:
            rc, _, _ = self.module.run_command([docker_bin, "compose", "version"])
            if rc == 0:
                return [docker_bin, "compose"]
        legacy = self.module.get_bin_path("docker-compose")
        return [legacy] if legacy else None

    def run(self, *args):
        rc, out, err = self.module.run_command(self.argv + list(args), cwd=self.project_dir)
        if rc != 0:
            command = " ".join(self.argv + list(args))
            self.module.fail_json(
                msg="%s failed in %s: %s"
                % (command, self.project_dir, (err or out).strip()[-2000:])
            )
        return out

    def container_ids(self, services):
        ids = {}
        for service in services:
            out = self.run("ps", "-q", service)
            ids[service] = [line.strip() for line in out.splitlines() if line.strip()]
        return ids

    def services(self):
        return [s for s in self.run("config", "--services").split() if s]


def inspect(module, client, compose, params, result, problems):
    images = {}
    for image in params["images"]:
        tag, context = image.get("tag"), image.get("context")
        if not tag or not context:
            problems.append("an image needs a context and a tag: %r" % image)
            continue
        dockerfile = os.path.join(context, image.get("dockerfile") or "Dockerfile")
        if not os.path.isdir(context):
            problems.append("build context %s not found (image %s)" % (context, tag))
            continue
        if not os.path.isfile(dockerfile):
            problems.append("Dockerfile %s not found (image %s)" % (dockerfile, tag))
            continue
        wanted = context_hash(image)
        current = None
        if client is not None:
            try:
                current = client.images.get(tag)
            except docker.errors.ImageNotFound:
                current = None
        labels = (current.labels or {}) if current is not None else {}
        images[tag] = dict(
            id=current.id if current is not None else "",
            context=wanted,
            built=False,
            stale=labels.get(LABEL) != wanted,
        )
        if images[tag]["stale"]:
            result["reasons"].append(
                "image %s is %s" % (tag, "not built from %s" % context if current else "missing")
            )
    result["images"] = images
    result["containers"] = {}
    if compose is None or client is None:
        return images
    services = params["services"] or compose.services()
    tag_ids = dict((t, i["id"]) for t, i in images.items())
    for service, ids in compose.container_ids(services).items():
        found = [describe(client.containers.get(i)) for i in ids]
        result["containers"][service] = found
        running = [c for c in found if c["status"] == "running" and not c["restarting"]]
        if not running:
            result["reasons"].append("service %s has no running container" % service)
        elif tag_ids and not any(c["image"] in tag_ids.values() for c in running):
            result["reasons"].append("service %s runs an image other than its tag's" % service)
    return images


def build(client, params, images, result):
    for image in params["images"]:
        info = images[image["tag"]]
        if not info["stale"]:
            continue
        try:
            built, _logs = client.images.build(
                path=image["context"],
                dockerfile=image.get("dockerfile") or "Dockerfile",
                tag=image["tag"],
                nocache=bool(image.get("nocache", False)),
                buildargs=image.get("buildargs") or None,
                labels={LABEL: info["context"]},
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            lines = [
                str(chunk.get("stream") or chunk.get("error") or "").strip()
                for chunk in exc.build_log
                if isinstance(chunk, dict)
            ]
            tail = " | ".join(line for line in lines if line)[-1500:]
            return "build of %s failed: %s: %s" % (image["tag"], exc.msg, tail)
        except docker.errors.APIError as exc:
            return "build of %s failed: %s" % (image["tag"], exc)
        info["after"] = built.id
        info["built"] = True
    return ""


def settle(client, compose, params, result):
    """Watch the services' containers: running, not restarting, no error in their logs."""
    services = params["services"] or compose.services()
    ids = compose.container_ids(services)
    first = dict((i, describe(client.containers.get(i))) for s in ids.values() for i in s)
    deadline = time.monotonic() + params["settle"]
    while True:
        now = dict((i, describe(client.containers.get(i))) for i in first)
        bad = [
            "%s (%s)" % (s, c["status"] + (", restarting" if c["restarting"] else ""))
            for s, cids in ids.items()
            for c in [now[i] for i in cids]
            if c["status"] != "running" or c["restarting"]
        ]
        restarted = [
            s
            for s, cids in ids.items()
            for i in cids
            if now[i]["restart_count"] != first[i]["restart_count"]
            or now[i]["started_at"] != first[i]["started_at"]
        ]
        missing = [s for s, cids in ids.items() if not cids]
        if bad or restarted or missing or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    result["containers"] = dict((s, [now[i] for i in cids]) for s, cids in ids.items())
    problems = []
    if missing:
        problems.append("no container for service(s) %s" % ", ".join(missing))
    if bad:
        problems.append("not running: %s" % ", ".join(bad))
    if restarted:
        problems.append("restarted while settling: %s" % ", ".join(sorted(set(restarted))))
    pattern = params["log_error_pattern"]
    if pattern:
        regex = re.compile(pattern)
        for service, cids in ids.items():
            for cid in cids:
                container = client.containers.get(cid)
                raw = container.logs(since=_since(now[cid]["started_at"]))
                text = raw.decode("utf-8", "replace")
                hits = [line for line in text.splitlines() if regex.search(line)]
                if hits:
                    problems.append(
                        "%s log matches %s: %s" % (service, pattern, " | ".join(hits[:3]))
                    )
    return problems


def _since(started_at):
    """Container StartedAt (RFC 3339, nanoseconds) as a unix time for logs(since=)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", started_at or "")
    if not match:
        return None
    return calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(
                type="str", choices=["checked", "stopped", "built", "up"], default="checked"
            ),
            images=dict(type="list", elements="dict", default=[]),
            project_dir=dict(type="path", default=""),
            services=dict(type="list", elements="str", default=[]),
            drain_timeout=dict(type="int", default=30),
            settle=dict(type="int", default=5),
            log_error_pattern=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params, state = module.params, module.params["state"]
    problems = []
    result = dict(changed=False, reasons=[], images={}, containers={})
    client = None
    if not HAS_DOCKER:
        problems.append("the docker SDK for Python is not installed on the host (python3-docker)")
    else:
        try:
            client = docker.from_env(timeout=300)
            result["engine"] = client.version().get("Version", "")
        except Exception as exc:  # any failure to reach the engine is reported the same way
            problems.append("the Docker engine does not answer: %s" % exc)
            client = None
    compose = None
    if params["project_dir"]:
        if not os.path.isdir(params["project_dir"]):
            problems.append("compose project directory %s not found" % params["project_dir"])
        else:
            compose = Compose(module, params["project_dir"])
            if compose.argv is None:
                problems.append("neither `docker compose` nor `docker-compose` is on the host")
                compose = None
    images = inspect(module, client, compose, params, result, problems)
    result["needed"] = bool(result["reasons"])
    result["problems"] = problems
    if problems:
        module.fail_json(msg="containers: " + "; ".join(problems), **result)
    if state == "checked":
        module.exit_json(**result)
    if state == "built":
        stale = [t for t, i in images.items() if i["stale"]]
        result["changed"] = bool(stale)
        if stale and not module.check_mode:
            error = build(client, params, images, result)
            if error:
                module.fail_json(msg=error, **result)
        module.exit_json(**result)
    if compose is None:
        module.exit_json(**result)
    services = params["services"] or compose.services()
    if state == "stopped":
        running = [
            s
            for s, found in result["containers"].items()
            if any(c["status"] in ("running", "restarting") for c in found)
        ]
        result["changed"] = bool(running)
        if running and not module.check_mode:
            compose.run("stop", "-t", str(params["drain_timeout"]), *running)
        module.exit_json(**result)
    before = compose.container_ids(services)
    if module.check_mode:
        result["changed"] = result["needed"]
        module.exit_json(**result)
    compose.run("up", "-d", "--no-build", *services)
    after = compose.container_ids(services)
    running_before = dict(
        (s, [c["id"] for c in found if c["status"] == "running"])
        for s, found in result["containers"].items()
    )
    result["changed"] = before != after or any(
        [i[:12] for i in after[s]] != running_before.get(s, []) for s in services
    )
    problems = settle(client, compose, params, result)
    if problems:
        module.fail_json(msg="containers: " + "; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
