"""Boot baseline under the unix port: connect umqtt.simple, publish one message, disconnect.

micropython mp_publish.py PORT TOPIC
"""

import sys

from umqtt.simple import MQTTClient

c = MQTTClient("bench-boot-floor", "127.0.0.1", int(sys.argv[1]))
c.connect()
c.publish(sys.argv[2].encode(), b"{}")
c.disconnect()
