"""The latency floor: a minimal paho-mqtt responder that answers every request at once on its replyTo.

python bench/floor.py PORT MODULE_ID  (broker on 127.0.0.1; prints "ready" once subscribed)
"""

import json
import socket
import sys

import paho.mqtt.client as mqtt

API = "everest_api/1/powermeter/"
REPLY = b'{"status":"NOT_SUPPORTED"}'


def _on_connect(client, userdata, flags, reason_code, properties):
    """Set TCP_NODELAY, as the firmware's MQTT link does, and subscribe to the module's requests."""
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    base = API + userdata + "/e2m/"
    client.subscribe([(base + "start_transaction", 0), (base + "stop_transaction", 0)])


def _on_message(client, userdata, msg):
    """Answer at once on the request's replyTo."""
    reply_to = json.loads(msg.payload)["headers"]["replyTo"]
    client.publish(reply_to, REPLY)


def main(port, module_id):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-floor", userdata=module_id)
    client.on_connect = _on_connect
    client.on_subscribe = lambda *_: print("ready", flush=True)
    client.on_message = _on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
