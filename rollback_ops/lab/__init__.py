"""The test lab: real hosts (containers with systemd as PID 1 and sshd) on loopback addresses."""

from rollback_ops.lab.hosts import Lab, LabHost

__all__ = ["Lab", "LabHost"]
