"""The approval commands: record a pending production run, approve it, read it. They change
no app: each writes or reads records in the hosts' approvals directory, as the person's own
SSH login (rollback_ops.approvals drives them; plugins/modules/approval.py writes)."""

from __future__ import annotations

from rollback_ops.appspec import AppSpec
from rollback_ops.operations.base import Operation, Request


class Approval(Operation):
    playbook = "approval"


class RequestApproval(Approval):
    name = "request"
    summary = "record a pending production run on its hosts, for another person to approve"

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return ["write the request, as your SSH login, in the host's approvals directory"]


class Approve(Approval):
    name = "approve"
    summary = "approve a pending production run, as your own SSH login"

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return [f"write an approval of run {request.approval.get('run', '')}, as your login"]


class ApprovalRead(Approval):
    name = "approval-read"
    summary = "read a pending production run and its approvals"
