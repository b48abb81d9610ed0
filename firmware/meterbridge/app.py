"""The running firmware: one poller per meter, the MQTT link, communication checks and EVerest requests."""

import asyncio
import gc
import json
import sys
import time

from micropython import const

from . import everest_link, hal, log, powermeter
from .everest_link import HEARTBEAT, START
from .journal import Journal
from .meter import Meter
from .modbus.master import Master
from .mqtt_link import MqttLink
from .supervisor import Supervisor

_CHECK_MS = const(1000)  # communication_check period; EVerest's default timeout is 5 s
_QUEUE = const(8)  # requests waiting for a signing meter at most; more are answered UNEXPECTED_ERROR at once
_WHY_EVERY = const(60)  # checks between log lines saying why communication_check is withheld
_NOT_ANSWERING = const(1)
_NO_CLOCK = const(2)
_PROBE_MS = const(2000)  # a meter is read at least this often, whatever period_ms, so silence shows within 5 s
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
    per meter (in buffers) a meter.Dataset and a jsonout.Writer, the buffer messages are read into (rx), the
    hal.Storage of journals and learned read limits, and the jsonout.Writer the state document is written into
    (doc: the first meter's, or None where a meter signs).
    """

    def __init__(self, cfg, profiles, buffers, rx, storage, doc=None):
        self._heap_every = cfg["heap_log_s"] * 1000 // _CHECK_MS  # checks between debug heap lines
        self.doc = doc
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
            journal = Journal(storage, m["module_id"])
            if prof.ocmf is None:  # each kind of transactions is loaded only for its meters
                from .transactions import Transactions

                tx = Transactions(journal, prof.name, hal.epoch_ms)
            else:
                from .ocmf import SignedTransactions

                tx = SignedTransactions(journal, hal.epoch_ms, prof.ocmf, master, m["slave"])
            mod = Module(Meter(m, prof, master, dataset, storage), topics, tx, out)
            self.modules.append(mod)
            for topic, kind in topics.requests.items():
                self._routes[topic] = (mod, kind)
        self._queue = []
        self._retained_seen = False
        self._faults = 0  # why communication_check is withheld, as last said (-1: say it again)
        self._why_in = 0  # checks until that is logged again
        self.heap_min = gc.mem_free() + gc.mem_alloc()  # lowest free after a collection, from the first report
        self.supervisor = Supervisor(hal.Watchdog(cfg["watchdog_ms"]))
        # (key, client_id, topic base, max_payload) when a board's boot chose the slot (update_cmd.py)
        self.update = self._update_cmd = self.trial = None
        if sys.argv[2:3] == ["slots"]:  # slots.py's boot chose the code slot
            cid = cfg["broker"]["client_id"]
            self.update = (cfg["update_key"], cid, ("meterbridge/%s/update/" % cid).encode(),
                           cfg["broker"]["max_payload"])  # the stream is taken by receive mode, with its own buffer
            self._routes[self.update[2] + b"cmd"] = (None, "cmd")
            from . import update_cmd  # now, while the heap is whole: later a few KB are free, in pieces

            self._update_cmd = update_cmd
        subs = list(self._routes)
        self._beacon = None
        # the request task and its event only where a meter signs: the others answer in the MQTT callback, and
        # asyncio's Event module alone takes about 1 KB
        self._wake = None
        if any(mod.tx.signs for mod in self.modules):  # only a key has to follow EVerest's restarts
            self._wake = asyncio.Event()
            # an EVerest API module is up (everest_api_module_helpers/src/ApiHelper.cpp, publish_ready_beacon)
            self._beacon = (cfg["broker"]["prefix"] + "everest_api/ready_beacon").encode()
            subs.append(self._beacon)
        # heartbeats and the beacon at QoS 0: signals of now, never queued by the broker while we are away, where
        # ~1000 of them (mosquitto's max_queued_messages) would crowd out the requests
        live = [t for t, route in self._routes.items() if route[1] == HEARTBEAT]
        if self._beacon:
            live.append(self._beacon)
        self.link = MqttLink(cfg["broker"], subs, self._on_message, self._on_connect, rx, live)

    def _on_connect(self):
        """Also when EVerest (re)starts: its API module forwards only a key it sees arrive."""
        for mod in self.modules:
            mod.tx.key_due = mod.tx.signs  # _requests publishes it, read from the meter first if need be
        self._faults = -1  # the link said "online": the next check says again what is wrong
        if self._wake:
            self._wake.set()
        result = self.slots().get("result")  # the last update's outcome (committed, rolled back or refused, and why)
        if result:
            self.link.publish(self.update[2] + b"result", json.dumps(result), True)  # retained for the host

    def slots(self):
        """slots.json (slots.py) when a board's boot chose the slot, else {}: read as JSON, for loading slots.py
        would take more heap than the bridge has to spare."""
        if not self.update:
            return {}
        try:
            with open("slots.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}  # no update yet

    def _on_update(self, msg):
        """A command on update/cmd: refused, or handed to receive mode with a reset (update_cmd.py)."""
        try:
            self._update_cmd.handle(self, msg)
        except MemoryError:
            self.link.publish(self.update[2] + b"status",
                              b'{"re":"cmd","state":"refused","why":"out of memory on the board: try again"}')

    def _reply(self, mod, reply_to, text):
        topic = mod.topics.reply(reply_to)
        for m in self.modules:  # never onto one of our own topics (a reply there is a bogus value or request)
            t = m.topics
            if topic in (t.values, t.check, t.public_key, self._beacon) or topic in t.requests:
                log.log(log.WARN, "replyTo refused, our own topic:", reply_to)
                return
        self.link.publish(topic, text)

    def _refuse(self, mod, reply_to, why):
        log.log(log.WARN, mod.meter.module_id, "bad request:", why)
        if reply_to:
            self._reply(mod, reply_to, everest_link.reply("UNEXPECTED_ERROR", why))

    def _on_message(self, topic, msg, oversize, retained):
        if topic == self._beacon:
            self._on_connect()
            return
        route = self._routes.get(topic)
        if route is None:
            return
        mod, kind = route
        if mod is None:  # update/cmd; a retained one would come back at every connect
            if not retained:
                self._on_update(msg)
            return
        if retained:  # left on the broker by some client, replayed on every connect: never a live request
            if not self._retained_seen:
                self._retained_seen = True
                log.log(log.WARN, "ignored, retained (logged once):", topic)
            return
        tx = mod.tx
        big = None
        try:
            if oversize:
                big = "request of %d bytes is over broker.max_payload" % oversize
            else:
                reply_to, payload = everest_link.parse(kind, msg)
        except MemoryError:
            gc.collect()
            big = "request too large for free RAM"
        except ValueError as e:  # (reply_to, why), see everest_link
            self._refuse(mod, *e.args)
            return
        if big:
            reply_to = kind != HEARTBEAT and everest_link.scan_reply_to(msg)
            if kind != START or tx.signs:
                self._refuse(mod, reply_to, big)
                return
            payload = None  # a meter that cannot sign answers NOT_SUPPORTED whatever the payload held
        if kind == HEARTBEAT:
            if payload == 0 or mod.heartbeat is not None and payload < mod.heartbeat:
                self._on_connect()  # EVerest's counter starts again at 0 when it restarts
            mod.heartbeat = payload
            return
        if not tx.signs:  # nothing to wait for: answered at once, never queued
            for _ in range(2):
                try:
                    text = tx.start(payload) if kind == START else tx.stop(payload)
                    break
                except MemoryError:
                    gc.collect()  # and once more: the journal write needs a few blocks
                    text = everest_link.reply("UNEXPECTED_ERROR", "out of memory handling the request")
        elif len(self._queue) >= _QUEUE:
            text = "busy: %d requests wait for the meter" % _QUEUE
            log.log(log.WARN, mod.meter.module_id, text)
            text = everest_link.reply("UNEXPECTED_ERROR", text)
        else:
            self._queue.append((mod, kind, reply_to, payload))
            self._wake.set()
            return
        if reply_to:
            self._reply(mod, reply_to, text)

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
                    self._reply(mod, reply_to, text)
                self.supervisor.beat("requests")  # one request answered: a full queue is not one stall
            try:
                await self._publish_keys()
            except MemoryError:
                gc.collect()  # tried again on the next turn

    async def _publish_keys(self):
        for mod in self.modules:  # not while the meter fails: a try would hold the bus for its timeouts
            if mod.tx.key_due and not mod.meter.failures and await mod.tx.fetch_key():
                # retained: an EVerest that subscribes later still gets it (its API module forwards what arrives)
                mod.tx.key_due = not self.link.publish(mod.topics.public_key, '"%s"' % mod.tx.public_key, True)

    async def _poll(self, mod):
        """A whole dataset every period_ms; in between, with a long period, one read every _PROBE_MS."""
        meter = mod.meter
        out = mod.out
        name = "poll:" + meter.module_id
        period = meter.period_ms
        due = time.ticks_ms()
        while True:
            t0 = time.ticks_ms()
            self.supervisor.beat(name)
            try:
                if time.ticks_diff(t0, due) >= 0:
                    due = time.ticks_add(t0, period)
                    if await meter.poll():
                        self._publish_values(mod, out)
                else:
                    await meter.probe()
            except MemoryError:
                gc.collect()  # this cycle is lost, never half-published; the next one starts clean
                log.log(log.ERROR, meter.module_id, "out of memory in a poll cycle")
            now = time.ticks_ms()
            wait = min(time.ticks_diff(due, now), _PROBE_MS - time.ticks_diff(now, t0))
            await asyncio.sleep_ms(max(wait, 0))

    def _publish_values(self, mod, out):
        meter = mod.meter
        now = hal.epoch_ms()
        if now is None:
            return  # the clock is not set yet: no 1970 timestamps (and no communication_check, see _checks)
        if powermeter.build(out, meter.profile, meter.dataset, meter.meter_id, powermeter.timestamp(now, hal.gmtime)):
            self.link.publish(mod.topics.values, out.mv[: out.n])

    async def _checks(self):
        """communication_check true once a second for each meter whose values EVerest gets, nothing otherwise.

        Never false: EVerest stops checking for good on false. Without the trues EVerest raises
        CommunicationFault naming this powermeter after cfg_communication_check_to_s (5 s).
        """
        report = None  # state.Reporter once the link is up (False: a signing meter's requests need the room)
        n = 0
        while True:
            n += 1
            if n % self._heap_every == 0:
                self._heap_report()
            if report:
                report.tick()
            elif report is None and self.link.up:
                gc.collect()
                report = False
                try:
                    # where a signing meter's request still has room to load its code (ocmf/__init__.py)
                    if gc.mem_free() >= sum(mod.tx.room for mod in self.modules if mod.tx.signs):
                        from .state import Reporter

                        report = Reporter(self)
                except MemoryError:
                    gc.collect()
                    report = None  # tried again next second
            self.supervisor.beat("checks")
            if self._wake:
                self._wake.set()  # the idle request task beats and retries a public key still due
            clock = hal.epoch_ms() is not None
            faults = 0  # 2 bits per meter: _NOT_ANSWERING or _NO_CLOCK (an int: nothing made while all is well)
            shift = 0
            for mod in self.modules:
                meter = mod.meter
                if meter.fresh() and clock:
                    self.link.publish(mod.topics.check, b"true")
                elif meter.fresh():
                    faults |= _NO_CLOCK << shift
                elif meter.last_error_kind:  # before its first reading there is nothing to say yet
                    faults |= _NOT_ANSWERING << shift
                shift += 2
            self._report(faults)
            await asyncio.sleep_ms(_CHECK_MS)

    def _report(self, faults):
        """Why communication_check is withheld: on the status topic at each change, in the log once a minute."""
        if faults != self._faults:
            self._faults = faults
            self._why_in = 0
            self.link.publish(self.link.status_topic, "online; " + self._why(faults) if faults else b"online", True)
        if faults:
            if self._why_in <= 0:
                log.log(log.WARN, "no communication_check:", self._why(faults))
                self._why_in = _WHY_EVERY
            self._why_in -= 1

    def _why(self, faults):
        parts = []
        for mod in self.modules:
            code = faults & 3
            faults >>= 2
            if code:
                parts.append(mod.meter.module_id + (": no clock (NTP): values withheld" if code == _NO_CLOCK else
                                                    ": meter not answering (%s)" % mod.meter.last_error_kind))
        return "; ".join(parts)

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
        # it beats after each request (and idle each second); a reply's publish may block on the socket as a
        # connect does, a journal write on flash takes a few ms
        if self._wake:
            sup.watch("requests", requests + keys + _LINK_DEADLINE_MS)

    def run_forever(self):
        asyncio.run(self.run())

    async def run(self):
        self._watch_tasks()
        sup = self.supervisor
        sup.spawn("link", lambda: self.link.run(lambda: sup.beat("link")))
        if self._wake:
            sup.spawn("requests", self._requests)
        sup.spawn("checks", self._checks)
        for mod in self.modules:
            sup.spawn("poll:" + mod.meter.module_id, lambda mod=mod: self._poll(mod))
        self._watch_trial()
        await sup.run()

    def _watch_trial(self):
        """A start on trial commits itself once healthy (commit.py). Not in run(): what a coroutine's frame held
        once stays in it, and the GC would keep commit.py's code for good."""
        self.trial = self.slots().get("trial")  # update_cmd refuses a command meanwhile
        if self.trial:
            from . import commit  # a start on trial only; it unloads itself once committed

            asyncio.create_task(commit.watch(self, self.trial))

