"""Firmware updates in ``usmp gateway`` (spec/ota.md 6): the OTA runner on the gateway's hooks.

Conventions: :func:`attach_ota` adds to the :class:`~usmp.gateway.Gateway`'s
``on_open`` and ``on_close`` hook lists, so the gateway itself is unchanged:
each session's CONTROL records go to the runner, and each change of a job
is published on ``<prefix>/<device-id>/ota`` (retained: the latest state of
the device's update) when the MQTT bridge is on. Jobs live in the
registry's ``ota_jobs`` table (:class:`~usmp.registry.ota.RegistryJobStore`),
so whichever gateway of a cluster holds a device's session runs its job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import Condition
from .gateway import Gateway
from .ota_jobs import OtaJob
from .ota_server import DEFAULT_POLL_INTERVAL, OtaRunner, event_payload
from .registry import open_registry
from .registry.ota import RegistryJobStore


def ota_topic(prefix: str, device_id: bytes) -> str:
    return f"{prefix}/{device_id.hex()}/ota"


def attach_ota(gateway: Gateway, runner: OtaRunner) -> None:
    """Runs ``runner`` on ``gateway``'s sessions and publishes its jobs' changes."""

    def opened(session: Any) -> None:
        session.control_handler = runner.control_received  # the device's STATUS starts its job

    async def closed(session: Any, reason: Condition) -> None:
        await runner.session_closed(session)

    previous = runner.on_event

    async def published(job: OtaJob) -> None:
        bridge = gateway.bridge
        if bridge is not None:
            bridge.publish_ota(job.device_id, event_payload(job))
        if previous is not None:
            outcome = previous(job)
            if outcome is not None:
                await outcome

    gateway.on_open.append(opened)
    gateway.on_close.append(closed)
    runner.on_event = published


class GatewayOta:
    """``usmp gateway --ota``: a runner over the registry's jobs, attached to a gateway, and its poller."""

    def __init__(self, gateway: Gateway, location: str, wrap_key: bytes | None, concurrency: int) -> None:
        self.registry = open_registry(location, wrap_key=wrap_key)
        self.runner = OtaRunner(RegistryJobStore(self.registry), concurrency=concurrency)
        attach_ota(gateway, self.runner)
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._poller = asyncio.create_task(self.runner.run_poller(DEFAULT_POLL_INTERVAL))

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self.registry.close)
