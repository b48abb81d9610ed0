"""The running firmware: one poller per meter, the MQTT link, communication checks and EVerest requests."""

import asyncio
import gc
import time

from micropython import const

from . import everest_link, hal, log, powermeter
from .everest_link import HEARTBEAT, START, RequestError
from .journal import Journal
from .meter import Meter
from .modbus.master import Master
from .mqtt_link import MqttLink
from .supervisor import Supervisor
from .transactions import Transactions

_CHECK_MS = const(1000)  # communication_check period; EVerest's default timeout is 5 s
_QUEUE = const(8)  # pending requests at most; more are dropped and counted
_LINK_DEADLINE_MS = const(15000)  # a connect may block on socket timeouts a few times over
_SLACK_MS = const(1000)


class Module:
    """One EVerest powermeter module: a meter, its topics and its transactions."""

    def __init__(self, meter, topics, transactions, out):
        self.meter = meter
        self.topics = topics
        self.tx = transactions
        self.heartbeat = None
        self.out = out  # a jsonout.Writer for its datasets


class App:
    """Wires meters, buses and the broker together and runs them.

    The long-lived buffers come from start-up, made while the heap still had room in one piece:
    per meter (in buffers) a meter.Dataset and a jsonout.Writer, and the buffer messages are read into (rx).
    """

    def __init__(self, cfg, profiles, buffers, rx):
        self._heap_every = cfg["heap_log_s"] * 1000 // _CHECK_MS  # checks between debug heap lines
        storage = hal.Storage(cfg["storage"])
        buses = {}
        self.modules = []
        self._routes = {}
        for i, (m, prof, (dataset, out)) in enumerate(zip(cfg["meters"], profiles, buffers)):
            key = m["uart"].get("device") or m["uart"].get("id")
            master = buses.get(key)
            if master is None:
                try:
                    bus = hal.Bus(m["uart"], m["baud"], m["parity"])
                except OSError as e:
                    raise OSError("meters[%d].uart: %s" % (i, e)) from None
                bits = 10 if m["parity"] == "N" else 11
                master = Master(bus, m["baud"], bits, m["timeout_ms"], m["retries"])
                buses[key] = master
            topics = everest_link.Topics(cfg["broker"]["prefix"], m["module_id"])
            tx = Transactions.for_meter(Journal(storage, m["module_id"]), prof, hal.epoch_ms, master, m["slave"])
            mod = Module(Meter(m, prof, master, dataset), topics, tx, out)
            self.modules.append(mod)
            for topic, kind in topics.requests.items():
                self._routes[topic] = (mod, kind)
        self._queue = []
        self._retained_seen = False
        self.dropped = 0
        self._wake = asyncio.Event()
        self.heap_min = gc.mem_free() + gc.mem_alloc()  # lowest free after a collection, from the first report
        self.supervisor = Supervisor(hal.Watchdog(cfg["watchdog_ms"]))
        self.link = MqttLink(cfg["broker"], list(self._routes), self._on_message, self._on_connect, rx)

    def _on_connect(self):
        for mod in self.modules:
            mod.tx.key_due = mod.tx.signs  # _requests publishes it, read from the meter first if need be
        self._wake.set()

    def _on_message(self, topic, msg, oversize, retained):
        route = self._routes.get(topic)
        if route is None:
            return
        mod, kind = route
        if retained:  # left on the broker by some client, replayed on every connect: never a live request
            if not self._retained_seen:
                self._retained_seen = True
                log.log(log.WARN, mod.meter.module_id, "retained message on", topic, "ignored (logged once)")
            return
        try:
            if oversize:
                raise RequestError(kind != HEARTBEAT and everest_link.scan_reply_to(msg),
                                   "request of %d bytes is over broker.max_payload" % oversize)
            reply_to, payload = everest_link.parse(kind, msg)
        except MemoryError:
            gc.collect()
            e = RequestError(kind != HEARTBEAT and everest_link.scan_reply_to(msg), "request too large for free RAM")
        except RequestError as err:
            e = err
        else:
            e = None
        if e:
            log.log(log.WARN, mod.meter.module_id, "bad request:", e)
            if e.reply_to:
                self.link.publish(mod.topics.reply(e.reply_to), everest_link.reply("UNEXPECTED_ERROR", str(e)))
            return
        if kind == HEARTBEAT:
            mod.heartbeat = payload
            return
        if len(self._queue) >= _QUEUE:
            self.dropped += 1
            log.log(log.WARN, "request queue full, dropped", self.dropped)
            return
        self._queue.append((mod, kind, reply_to, payload))
        self._wake.set()

    async def _requests(self):
        while True:
            self.supervisor.beat("requests")
            await self._wake.wait()  # a request, or _checks' once-a-second nudge (a key still due is tried again)
            self._wake.clear()
            while self._queue:
                mod, kind, reply_to, payload = self._queue.pop(0)
                gc.collect()  # a request may need large blocks (a signing meter's record): start from a clean heap
                try:
                    if kind == START:
                        text = await mod.tx.start(payload)
                    else:
                        text = await mod.tx.stop(payload)
                except MemoryError:
                    gc.collect()
                    text = everest_link.reply("UNEXPECTED_ERROR", "out of memory handling the request")
                if reply_to:
                    self.link.publish(mod.topics.reply(reply_to), text)
                self.supervisor.beat("requests")  # one request answered: a full queue is not one stall
            try:
                await self._publish_keys()
            except MemoryError:
                gc.collect()  # tried again on the next turn

    async def _publish_keys(self):
        for mod in self.modules:  # not while the meter fails: a try would hold the bus for its timeouts
            if mod.tx.key_due and not mod.meter.failures and await mod.tx.fetch_key():
                mod.tx.key_due = not self.link.publish(mod.topics.public_key, '"%s"' % mod.tx.public_key, True)

    async def _poll(self, mod):
        meter = mod.meter
        out = mod.out
        name = "poll:" + meter.module_id
        while True:
            t0 = time.ticks_ms()
            self.supervisor.beat(name)
            try:
                if await meter.poll():
                    self._publish_values(mod, out)
            except MemoryError:
                gc.collect()  # this cycle is lost, never half-published; the next one starts clean
                log.log(log.ERROR, meter.module_id, "out of memory in a poll cycle")
            spent = time.ticks_diff(time.ticks_ms(), t0)
            await asyncio.sleep_ms(max(meter.period_ms - spent, 0))

    def _publish_values(self, mod, out):
        meter = mod.meter
        now = hal.epoch_ms()
        if now is None:
            return  # the clock is not set yet: no 1970 timestamps
        if powermeter.build(out, meter.profile, meter.dataset, meter.meter_id, powermeter.timestamp(now, hal.gmtime)):
            self.link.publish(mod.topics.values, out.mv[: out.n])

    async def _checks(self):
        n = 0
        while True:
            n += 1
            if n % self._heap_every == 0:
                self._heap_report()
            self.supervisor.beat("checks")
            self._wake.set()  # the idle request task beats and retries a public key still due
            for mod in self.modules:
                if mod.meter.fresh():
                    self.link.publish(mod.topics.check, b"true")
            await asyncio.sleep_ms(_CHECK_MS)

    def _heap_report(self):
        """Debug line with the live heap: free after a collection, and its lowest value so far."""
        gc.collect()
        free = gc.mem_free()
        if free < self.heap_min:
            self.heap_min = free
        log.log(log.DEBUG, "heap free %d floor %d cycles %d" % (free, self.heap_min,
                                                                sum(m.meter.cycles for m in self.modules)))

    def _watch_tasks(self):
        """Each task's longest honest silence: its period plus every wait it may be stuck in, from the config.

        A bus transaction takes at most its timeout plus the frames' wire time (within _SLACK_MS), once per
        try. The bus lock is taken per transaction, so each transaction may first wait for one of every
        other task on that bus (its other pollers and the request task).
        """
        sup = self.supervisor
        sup.watch("link", _LINK_DEADLINE_MS)
        sup.watch("checks", 2 * _CHECK_MS + _SLACK_MS)
        requests = keys = 0
        for mod in self.modules:
            master = mod.meter.master
            per = (master.timeout_ms + _SLACK_MS) * (master.retries + 1)
            tasks = 1 + sum(1 for m in self.modules if m.meter.master is master)  # its pollers and requests
            sup.watch("poll:" + mod.meter.module_id,
                      mod.meter.period_ms + len(mod.meter.profile.reads) * tasks * per + _SLACK_MS)
            if mod.tx.signs:  # one request, whose every step may wait for the bus; then its public key
                steps, wait_ms = mod.tx.worst()
                requests = max(requests, wait_ms + steps * tasks * per)
                keys += tasks * per
        sup.watch("requests", requests + keys + 2 * _SLACK_MS)  # beats after each request (and idle each second)

    def run_forever(self):
        asyncio.run(self.run())

    async def run(self):
        self._watch_tasks()
        sup = self.supervisor
        sup.spawn("link", lambda: self.link.run(lambda: sup.beat("link")))
        sup.spawn("requests", self._requests)
        sup.spawn("checks", self._checks)
        for mod in self.modules:
            sup.spawn("poll:" + mod.meter.module_id, lambda mod=mod: self._poll(mod))
        await sup.run()
