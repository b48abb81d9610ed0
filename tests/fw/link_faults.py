"""The MQTT link against a broker given by the test, beside a ticker that measures how late the loop runs.

    link_faults.py PORT SECONDS  ->  JSON {late_ms, connects, crash}

While the link is up it publishes to lf/values every 100 ms, as values would be; the test's broker
side sees when they begin. late_ms is the largest delay of a 20 ms ticker: how long the loop was
blocked at most. crash is the exception that ended link.run(), if one did.
"""

import asyncio
import json
import sys
import time

from meterbridge.mqtt_link import MqttLink

PORT, SECONDS = int(sys.argv[1]), float(sys.argv[2])
BROKER = {"host": "127.0.0.1", "port": PORT, "client_id": "link-faults", "username": None, "password": None,
          "keepalive": 30, "tls": None, "prefix": ""}
state = {"late_ms": 0, "crash": None}


async def ticker():
    while True:
        t = time.ticks_ms()
        await asyncio.sleep_ms(20)
        state["late_ms"] = max(state["late_ms"], time.ticks_diff(time.ticks_ms(), t) - 20)


async def values(link):
    while True:
        link.publish(b"lf/values", b"42")
        await asyncio.sleep_ms(100)


async def run_link(link):
    try:
        await link.run(lambda: None)
    except Exception as e:  # noqa: BLE001 - reported to the test
        state["crash"] = repr(e)


async def main():
    link = MqttLink(BROKER, [b"lf/e2m/start_transaction"], lambda *a: None, lambda: None, bytearray(256))
    for coro in (ticker(), values(link), run_link(link)):
        asyncio.create_task(coro)
    await asyncio.sleep_ms(int(SECONDS * 1000))
    print(json.dumps({"late_ms": state["late_ms"], "connects": link.connects, "crash": state["crash"]}))


asyncio.run(main())
