# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""An app's compose project and its containers: ``docker compose`` or ``docker-compose``,
whichever the host has, run in the project's directory (so its own ``.env`` and project
name apply), and a container described as the modules report it.

Shared host-side code of the containers module (which stops, rebuilds and brings services
up) and the status_info module (which only reads them). Python 3.6+ standard library only;
the container objects come from the docker SDK the modules import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class Compose:
    """The compose command of the host (``argv`` is None when it has neither)."""

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

    def run(self, *args, **kwargs):
        """compose's output; a failure fails the module, or with fail=False raises
        RuntimeError naming the command (for a module that reports it instead)."""
        rc, out, err = self.module.run_command(self.argv + list(args), cwd=self.project_dir)
        if rc != 0:
            msg = "%s failed in %s: %s" % (
                " ".join(self.argv + list(args)),
                self.project_dir,
                (err or out).strip()[-2000:],
            )
            if kwargs.get("fail", True):
                self.module.fail_json(msg=msg)
            raise RuntimeError(msg)
        return out

    def container_ids(self, services, fail=True):
        ids = {}
        for service in services:
            out = self.run("ps", "-q", service, fail=fail)
            ids[service] = [line.strip() for line in out.splitlines() if line.strip()]
        return ids

    def services(self, fail=True):
        return [s for s in self.run("config", "--services", fail=fail).split() if s]


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
