"""Answers each uplink usmp/<id>/up with the same payload on usmp/<id>/down.

The C demo device checks that every message comes back; behind ``usmp
gateway`` the echo is this MQTT client. Run by the discovery tests inside
the gateway's network namespace: ``mqtt_echo.py PORT``; prints "ready" once
subscribed, runs until killed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import paho.mqtt.client as paho


def main() -> None:
    port = int(sys.argv[1])
    client = paho.Client(client_id="usmp-discovery-echo")

    def on_connect(client: paho.Client, userdata: Any, flags: Any, rc: int) -> None:
        client.subscribe("usmp/+/up", qos=1)

    def on_subscribe(client: paho.Client, userdata: Any, mid: int, granted: Any) -> None:
        print("ready", flush=True)

    def on_message(client: paho.Client, userdata: Any, message: Any) -> None:
        client.publish(message.topic[: -len("up")] + "down", message.payload, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + 15
    while True:  # mosquitto was started just before: give it a moment
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    client.loop_forever()


if __name__ == "__main__":
    main()
