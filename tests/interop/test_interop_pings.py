"""One PONG per PING (spec 6.3, row 31), however the PINGs are cut into reads.

The C engine keeps at most one unsent PONG and takes no more input while one
waits, so a gateway loop that drops the rest of a read when the engine stops
short of it would answer a burst of pipelined PINGs with one PONG and then
misread the stream. Both gateways must answer every PING of one write.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from usmp.engine import ClientEngine, EngineConfig
from usmp.wire import Mode

from interop_harness import DEVICE, GATEWAYS, PSK, CBuild, async_test, gateway
from interop_proxy import split_frames

T_PONG = 0x07
PINGS = 200


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_pipelined_pings_in_one_write_get_one_pong_each(c_build: CBuild, tmp_path: Path, gw_kind: str) -> None:
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        engine = ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK,
                              config=EngineConfig(max_record=512, max_message=512))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            engine.start(0.0)
            writer.write(b"".join(engine.frames_to_send()))
            engine.receive_data(await asyncio.wait_for(reader.readexactly(57), 10), 0.0)
            writer.write(b"".join(engine.frames_to_send()))
            engine.receive_data(await asyncio.wait_for(reader.readexactly(27), 10), 0.0)
            assert engine.established
            for i in range(PINGS):
                engine.send_ping(i.to_bytes(4, "big"))
            writer.write(b"".join(engine.frames_to_send()))  # all of them in one write

            received = bytearray()
            pongs: list[bytes] = []
            async with asyncio.timeout(20):
                while len(pongs) < PINGS:
                    data = await reader.read(65536)
                    assert data, f"the gateway closed the connection after {len(pongs)} of {PINGS} PONGs"
                    received += data
                    pongs += [frame for frame in split_frames(received) if frame[0] == T_PONG]
            assert len(pongs) == PINGS
            # Each PONG opens under the next receive counter: none was lost,
            # repeated or reordered, or the engine would have failed (BAD_RECORD).
            for frame in pongs:
                engine.receive_data(frame, 0.0)
                assert engine.established, engine.error
        finally:
            writer.close()
