"""`status`: where every host stands for its app; reads, changes nothing, takes no lock."""

from __future__ import annotations

from rollback_ops.appspec import AppSpec
from rollback_ops.operations.base import Operation, Request


class Status(Operation):
    name = "status"
    playbook = "status"
    summary = "where every host stands, and the hosts of one app that disagree (drift)"

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return ["read where the host stands (one read-only module call)"]
