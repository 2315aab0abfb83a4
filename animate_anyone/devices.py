"""Where work runs on this machine: the torch device a setting names, and a free loopback port
(for a training run's process group or a local server)."""
from __future__ import annotations

import os
import socket

from animate_anyone.errors import PermanentError


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or `taskset`'s set), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)


class DeviceError(PermanentError):
    """A device was asked for that this machine does not have."""


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(spec: str) -> str:
    """``auto`` → ``cuda`` when PyTorch sees a GPU, else ``cpu``; ``cuda[:N]`` without one is an error."""
    if spec == "auto":
        return "cuda" if has_cuda() else "cpu"
    if spec.startswith("cuda") and not has_cuda():
        raise DeviceError(f"device {spec!r} asked for, but PyTorch sees no CUDA GPU", "no_gpu")
    return spec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
