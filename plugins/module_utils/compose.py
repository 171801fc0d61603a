# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""An app's compose project as the Docker engine sees it: its name, and its services'
containers described as the modules report them.

Shared host-side code of the containers module (which stops, rebuilds and brings services up
with the compose command) and the status_info module (which only reads them, through the
engine: one API call, where a ``docker-compose ps`` per service costs seconds). Python 3.6+
standard library only; the container objects come from the docker SDK the modules import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from .envfile import decode, read_values

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"  # `compose run` containers: not the service's


def describe(container):
    """A container as the modules report it: short id, image id, status, restarts, start."""
    container.reload()
    state = container.attrs.get("State", {})
    return dict(
        id=container.id[:12],
        image=container.attrs.get("Image", ""),
        status=state.get("Status", ""),
        restarting=bool(state.get("Restarting")),
        restart_count=container.attrs.get("RestartCount", 0),
        started_at=state.get("StartedAt", ""),
    )


def project_name(project_dir, environ=None):
    """The project's name as compose finds it when run in project_dir: $COMPOSE_PROJECT_NAME,
    else the one in the project's .env file, else the directory's name; lowercased, keeping
    only a-z, 0-9, _ and - (compose's own normalization)."""
    environ = os.environ if environ is None else environ
    name = environ.get("COMPOSE_PROJECT_NAME", "")
    if not name:
        try:
            with open(os.path.join(project_dir, ".env"), "rb") as handle:
                name = read_values(decode(handle.read())).get("COMPOSE_PROJECT_NAME", "")
        except (IOError, OSError):
            name = ""
    name = name or os.path.basename(os.path.normpath(project_dir))
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


def service_containers(client, project_dir, services=()):
    """{service: [described container]} of the project (only services, when given; a
    service with no container has an empty list), as ``compose ps`` finds them: by the
    project and service labels compose puts on each container."""
    found = dict((service, []) for service in services)
    listed = client.containers.list(
        all=True, filters={"label": "%s=%s" % (PROJECT_LABEL, project_name(project_dir))}
    )
    for container in listed:
        labels = container.labels or {}
        service = labels.get(SERVICE_LABEL, "")
        if labels.get(ONEOFF_LABEL) == "True" or (services and service not in found):
            continue
        found.setdefault(service, []).append(describe(container))
    return found
