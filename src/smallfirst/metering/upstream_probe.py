"""Energy of one request to a server on this machine, for profiling a remote tier.

The gateway cannot see inside a remote model's server, so a receipt for a remote tier takes
its joules from a per-token profile. This module measures that profile's runs for a server
that runs on the same machine as ``smallfirst models profile`` (llama.cpp's
``llama-server``, vLLM, Ollama...): the operator names its process (``--pid``), and each
request is sent through the gateway's own :class:`~smallfirst.engines.remote.RemoteEngine`
while the meter reads, before and after it:

* ``estimated`` (no readable hardware counters): the server process's CPU time (all its
  threads, from ``/proc/<pid>/stat``) times watts per busy thread, plus RAM watts times the
  request's wall time: the same rule and constants as an in-process receipt's estimate, so
  a profiled remote tier and an in-process one are compared like for like.
* ``measured`` (RAPL or NVML readable): the counters' joules over the request's wall time.
  Their scope is the whole package or board, so anything else running on the machine is
  counted too; the profile says so.

It does not work for a server on another machine (no process to read; the operator
configures ``profiles.NAME`` there instead), and it sends nothing but the runs it is given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.remote import RemoteEngine
from smallfirst.errors import ConfigError
from smallfirst.metering.meter import Accountant, EstimateConstants
from smallfirst.types import Message, Usage

__all__ = ["UpstreamProbe", "process_cpu_s"]


def process_cpu_s(pid: int) -> float:
    """CPU-seconds (user + system, all threads) that process ``pid`` has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        raise ConfigError(
            f"no process {pid} on this machine: --pid must name the server's process here"
        ) from None
    # the command name (field 2) may hold spaces; the fields after its ")" are fixed
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class UpstreamProbe:
    """One remote model, its server's process on this machine, metered per request."""

    engine: RemoteEngine
    pid: int
    accountant: Accountant  # for its hardware counters only: the server is not this process
    constants: EstimateConstants
    chat: bool

    def scope(self) -> str:
        """What the figures cover, for the profile's source."""
        if self.accountant.measured:
            return (
                f"hardware counters ({self.accountant.scope}) over each request: the whole "
                "machine, other processes included"
            )
        return (
            f"server pid {self.pid}'s CPU time × {self.constants.watts_per_thread:g} W/thread "
            f"+ wall time × {self.constants.ram_w:g} W RAM ({self.constants.source})"
        )

    async def run(self, text: str, max_tokens: int) -> tuple[float, Usage, str]:
        """Joules, usage and energy method of one greedy request to the server."""
        sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
        request = (
            GenerationRequest(sampling, messages=(Message("user", text),), stream=False)
            if self.chat
            else GenerationRequest(sampling, prompt=text, stream=False)
        )
        joules_before = sum(c.read_j() for c in self.accountant.counters)
        cpu_before, wall_before = process_cpu_s(self.pid), time.monotonic()
        usage: Usage | None = None
        async for chunk in self.engine.generate(request):
            usage = chunk.usage or usage
        cpu_s = process_cpu_s(self.pid) - cpu_before
        wall_s = time.monotonic() - wall_before
        if usage is None:
            raise ConfigError(f"{self.engine.spec.name}: the server reported no token counts")
        if self.accountant.measured:
            joules = sum(c.read_j() for c in self.accountant.counters) - joules_before
            return joules, usage, "measured"
        joules = cpu_s * self.constants.watts_per_thread + wall_s * self.constants.ram_w
        return joules, usage, "estimated"
