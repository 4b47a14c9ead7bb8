"""Streaming over EPICS PV Access with pvapy: a scan served as a detector plus a positions channel (``replay``),
and a receiver that joins the two by trigger count (``Receiver``, feeding an ``io.join.Joiner``).

Channels: frames are areaDetector NTNDArrays whose ``uniqueId`` is the trigger count (made and read with pvapy's
``AdImageUtility``); positions are a structure ``{trigger: ulong[], x: double[], y: double[], last: boolean}``
(probe positions in metres), one update per chunk, ``last`` set on the update that ends the scan.
Network: ``loopback()`` keeps the PV Access client and server on 127.0.0.1 (no broadcast elsewhere) unless the
environment already says otherwise; tests and the demo use it.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .join import Joiner

QUEUE = 100000
"""Updates pvapy's queue may hold per channel between two drains (an epoch); frames of 128^2 uint16: 33 kB each."""
SERVER_QUEUE = 1000
"""The queue each channel asks the server for (pvRequest ``record[queueSize=...]``): updates the server keeps for
this client while the network is behind."""
FIELDS = {"trigger": "trigger", "x": "x", "y": "y", "last": "last"}
"""Default field names of a positions update (a stream profile's [stream.fields] renames them; "last" may be
empty: the scan then ends by --expected or by quiet)."""
POSITIONS = None
"""The positions channel's structure (made on first use: pvaccess is imported only when streaming)."""
REOPEN = 1.0
"""Seconds a subscribed channel may go without a server before it is made anew (:class:`Subscription`)."""


def channels(names: str | list) -> list:
    """Frames channel names: one, a comma-separated list or a list (e.g. the output channels of a beamline's
    ``pvapy-hpc-consumer`` processes, each carrying part of the frames)."""
    out = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not out:
        raise ValueError("--frames: no channel named")
    return out


def frames_request(group: str = "") -> str:
    """The frames channel's pvRequest: a queue on the server (``SERVER_QUEUE``) and, with ``group``, pvapy's data
    distributor (the server's ``pydistributor`` plugin): the subscribers of one group take the updates in turn,
    one each (every subscriber its own set), so R ranks each receive every R-th frame."""
    share = f"_[pydistributor=group:{group};updates:1]" if group else ""
    return f"record[queueSize={SERVER_QUEUE}]field({share})"


def _images(updates, reshape) -> list:
    """The (trigger count, image) of every frame among ``updates`` (PvObjects; the record's initial, empty value
    left out)."""
    out = []
    for pv in updates:
        uid, image, *_ = reshape(pv)
        if image is not None and uid > 0:
            out.append((uid, image))
    return out


def loopback(env=os.environ) -> None:
    """PV Access on 127.0.0.1 only: no automatic address list (no broadcast), the server bound to loopback.
    Values already in the environment are kept."""
    env.setdefault("EPICS_PVA_AUTO_ADDR_LIST", "NO")
    env.setdefault("EPICS_PVA_ADDR_LIST", "127.0.0.1")
    env.setdefault("EPICS_PVAS_INTF_ADDR_LIST", "127.0.0.1")


def _pva():
    loopback()
    import pvaccess

    global POSITIONS
    if POSITIONS is None:
        POSITIONS = {"trigger": [pvaccess.ULONG], "x": [pvaccess.DOUBLE], "y": [pvaccess.DOUBLE],
                     "last": pvaccess.BOOLEAN}
    return pvaccess


def schedule(count: int, chunk: int, shuffle: bool, drop: float, duplicate: float, seed: int = 0) -> list:
    """The order of a replay: a list of ("frame", index) and ("positions", start, stop) events (indices 0-based;
    trigger count = index + 1). Frames in scan order or shuffled; a fraction ``drop`` never sent; a fraction
    ``duplicate`` sent twice (the second time a few frames later). Positions in chunks of ``chunk``: even chunks
    before their first frame, odd ones after their last (so both orders occur)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(count) if shuffle else np.arange(count)
    keep = order[rng.random(count) >= drop]
    events = [("frame", int(i)) for i in keep]
    for i in keep[rng.random(len(keep)) < duplicate]:
        at = next(k for k, e in enumerate(events) if e == ("frame", int(i)))
        events.insert(min(at + 1 + int(rng.integers(1, 8)), len(events)), ("frame", int(i)))
    chunks = [(s, min(s + chunk, count)) for s in range(0, count, chunk)]
    for c, (start, stop) in enumerate(chunks):
        members = [k for k, e in enumerate(events) if e[0] == "frame" and start <= e[1] < stop]
        if c % 2 == 0 or not members:
            at = members[0] if members else len(events)
        else:
            at = members[-1] + 1
        events.insert(at, ("positions", start, stop))
    return events


def replay(frames, x, y, frames_channel: str, positions_channel: str, rate: float, events: list,
           start_delay: float = 2.0, linger: float = 2.0, log=print, end: bool = True) -> dict:
    """Serve ``frames`` (POSI, N, N) integers as stored by the detector, with probe positions ``x``/``y``
    (metres), on two PV Access channels of a pvapy server, following ``events`` (:func:`schedule`) at ``rate``
    frames per second; then send the end marker (unless ``end`` is False: a server that dies mid-scan) and keep
    serving ``linger`` seconds. Returns what was sent."""
    pva = _pva()
    from pvapy.utility.adImageUtility import AdImageUtility

    # A PvaServer serves from its construction: stopped until both records exist, no client's search meets a
    # server without its channels. (tests/test_stream.py's restarting server, OPENBLAS_NUM_THREADS=1: the stream
    # lost both channels of the second server in 4 of 24 runs before, in none of 8 after. What remained, one
    # channel found late, was pvAccess' slow search, which the client's Subscription now answers by making the
    # channel anew: the README's streaming section.)
    server = pva.PvaServer()
    server.stop()
    server.addRecord(frames_channel, pva.NtNdArray())
    server.addRecord(positions_channel, pva.PvObject(POSITIONS))
    server.start()
    log(f"replay: serving {frames_channel} and {positions_channel}; starting in {start_delay:g} s")
    time.sleep(start_delay)
    sent = {"frames": 0, "positions": 0}
    period = 1.0 / rate if rate > 0 else 0.0
    t0 = time.perf_counter()
    for event in events:
        if event[0] == "frame":
            i = event[1]
            server.update(frames_channel, AdImageUtility.generateNtNdArray2D(i + 1, np.ascontiguousarray(frames[i])))
            sent["frames"] += 1
            wait = t0 + sent["frames"] * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        else:
            _, start, stop = event
            server.update(positions_channel, pva.PvObject(POSITIONS, {
                "trigger": list(range(start + 1, stop + 1)), "x": [float(v) for v in x[start:stop]],
                "y": [float(v) for v in y[start:stop]], "last": False}))
            sent["positions"] += stop - start
    if end:
        server.update(positions_channel, pva.PvObject(POSITIONS, {"trigger": [], "x": [], "y": [], "last": True}))
    sent["seconds"] = time.perf_counter() - t0
    log(f"replay: sent {sent['frames']} frames and {sent['positions']} positions in {sent['seconds']:.2f} s; "
        f"{'end marker sent, ' if end else 'no end marker, '}serving {linger:g} s more")
    time.sleep(linger)
    return sent


class Receiver:
    """Subscribes to the frames and positions channels and joins what arrives (``joiner``).

    Updates are queued by pvapy's C++ layer (``Channel.qMonitor`` into a ``PvObjectQueue``, asking the server for a
    queue of its own too; each channel a :class:`Subscription`, made anew while it has no server) and drained by
    :meth:`status` and :meth:`take` in the caller's thread: nothing in the network path waits for Python. (Python
    callbacks instead wait for the GIL, which an epoch holds: measured 850 of 2,100 frames lost at 100 Hz, and with
    pvapy's own callback queue whole position chunks were lost.) With ``group`` the frames come through pvapy's data
    distributor, this receiver taking its turn with the other ranks' ``Share``; theirs are handed over with
    :meth:`add_frames`."""

    def __init__(self, frames_channel: str | list, positions_channel: str, fields: dict | None = None,
                 group: str = ""):
        pva = _pva()
        self.fields = dict(FIELDS, **(fields or {}))
        """Which fields of a positions update hold the trigger counts, x, y and the end flag (``FIELDS``)."""
        self.names = (", ".join(channels(frames_channel)), positions_channel)
        self.joiner = Joiner()
        self.last_arrival = {"frames": None, "positions": None}
        self.ended = False
        self.started = time.monotonic()
        self.first_frame = None
        """time.monotonic() of the first frame drained (for the latency figures)."""
        self.own = 0
        """Frames this receiver took from its own subscription (all of them, unless distributed)."""
        self.frames = Share(frames_channel, group)
        """The frames subscription (in the distributor's ``group``, if any)."""
        self.positions = Subscription(pva, positions_channel, frames_request())
        """The positions updates."""

    def _drain(self) -> None:
        own = self.frames.take()
        self.own += len(own)
        self.add_frames(own)
        for pv in self.positions.take():
            self._on_positions(pv)

    def add_frames(self, frames) -> None:
        """Join (trigger count, image) frames: this receiver's own, or those other ranks received."""
        if not frames:
            return
        self.last_arrival["frames"] = time.monotonic()
        self.first_frame = self.first_frame or self.last_arrival["frames"]
        for uid, image in frames:
            self.joiner.add_frame(uid, image)

    def _on_positions(self, pv):
        f = self.fields
        self.last_arrival["positions"] = time.monotonic()
        try:
            triggers, xs, ys = pv[f["trigger"]], pv[f["x"]], pv[f["y"]]
        except Exception:  # pvaccess raises its own FieldNotFound
            raise ValueError(f"{self.names[1]}: the positions update has no field {f['trigger']!r}, {f['x']!r} or "
                             f"{f['y']!r} (fields: {sorted(pv.getStructureDict())}); name them in the profile") from None
        if f["last"] and f["last"] in pv.getStructureDict() and pv[f["last"]]:
            self.ended = True
        if len(triggers) != len(xs) or len(triggers) != len(ys):
            raise ValueError(f"{self.names[1]}: a positions update with {len(triggers)} trigger counts, {len(xs)} x "
                             f"and {len(ys)} y")
        self.joiner.add_positions(triggers, xs, ys)

    def status(self, expected: int | None, quiet: float = 2.0, timeout: float = 30.0) -> str | None:
        """Why the scan is over ('expected' frames joined, 'end marker' then ``quiet`` seconds without data, or
        'quiet': ``timeout`` seconds without any), or None while it runs. A channel from which nothing at all came
        within ``timeout`` seconds of the start is an error (TimeoutError naming it)."""
        self._drain()
        now = time.monotonic()
        arrivals = [t for t in self.last_arrival.values() if t is not None]
        silent = [name for name, key in zip(self.names, ("frames", "positions")) if self.last_arrival[key] is None]
        if expected is not None and len(self.joiner.joined) >= expected:
            return "expected"
        latest = max(arrivals) if arrivals else self.started
        if self.ended and now - latest >= quiet:
            return "end marker"
        if silent and now - self.started >= timeout:
            raise TimeoutError(f"{', '.join(silent)}: nothing received in {timeout:g} s (is the channel served, and "
                               f"reachable with EPICS_PVA_ADDR_LIST={os.environ.get('EPICS_PVA_ADDR_LIST', '')}?)")
        if not silent and now - latest >= timeout:
            return "quiet"
        return None

    def take(self) -> list:
        """The items joined since the last call (``io.join.Joined``)."""
        self._drain()
        return self.joiner.take()

    def reopened(self) -> dict:
        """How often each of this receiver's channels was made anew ({channel: count}; :class:`Subscription`)."""
        return {s.name: s.reopened for s in [*self.frames.subscriptions, self.positions]}

    def close(self) -> Joiner:
        self.frames.close()
        self.positions.close()
        self._drain()
        self.joiner.close()
        return self.joiner


class Share:
    """A subscription to the frames channel(s), queued by pvapy's C++ layer and drained by :meth:`take`: rank 0's
    ``Receiver`` holds one; with pvapy's data distributor (``group``) every other rank holds one too, takes its
    share of the frames and hands it to rank 0, where they are joined."""

    def __init__(self, frames_channel: str | list, group: str):
        pva = _pva()
        from pvapy.utility.adImageUtility import AdImageUtility

        self._reshape = AdImageUtility.reshapeNtNdArray
        self.subscriptions = [Subscription(pva, name, frames_request(group)) for name in channels(frames_channel)]

    def take(self) -> list:
        """The (trigger count, image) of the frames received since the last call."""
        return [f for s in self.subscriptions for f in _images(s.take(), self._reshape)]

    def close(self) -> None:
        for s in self.subscriptions:
            s.close()


class Subscription:
    """One channel's monitor: updates queued by pvapy's C++ layer (``Channel.qMonitor`` into a ``PvObjectQueue``
    with the pvRequest ``request``) and drained by :meth:`take` in the caller's thread; a channel that has been
    without a server for ``REOPEN`` seconds (lost, or not yet found) is made anew there.

    Why: pvAccess searches for a channel without a server at intervals that double (from 0.225 s to about 30 s), and
    sooner only when a new server's beacon makes it. Over loopback with a unicast address list
    (EPICS_PVA_ADDR_LIST=127.0.0.1, how the tests and the demo run), a server restarted 2-5 s after the first
    stopped was found by channels left to pvAccess 0.05-3.7 s after the server's first update (median 2.4 s), the
    two channels of one server at different times in 6 of 10 trials (once 0.05 and 3.7 s; in an earlier run one not
    within its 6 s): a stream lost what the restarted detector sent meanwhile, or kept its positions without its
    frames. Made anew every second, they found it after 0.04-0.48 s (median 0.17 s), both together
    (``scripts/bench_reconnect.py``, ``benchmarks/reconnect.json``). With pvAccess' default broadcast search it was
    quicker, under 0.4 s, but missed one channel in 22 development runs too. A channel made anew searches at
    once."""

    def __init__(self, pva, name: str, request: str):
        self._pva, self.name, self.request = pva, name, request
        self.reopened = 0
        """How often the channel was made anew."""
        self.closed = False
        self._open()

    def _open(self) -> None:
        self.channel = self._pva.Channel(self.name, self._pva.PVA)
        self.queue = self._pva.PvObjectQueue(QUEUE)
        self.channel.qMonitor(self.queue, self.request)
        self.opened = time.monotonic()

    def _drain(self, queue) -> list:
        out = []
        while True:
            try:
                out.append(queue.get())
            except self._pva.QueueEmpty:
                return out

    def take(self) -> list:
        """The updates (PvObjects) received since the last call, in order of arrival."""
        out = self._drain(self.queue)
        if not self.closed and time.monotonic() - self.opened >= REOPEN and not self.channel.isConnected():
            queue = self.queue
            _stop(self.channel)
            self._open()
            self.reopened += 1
            out += self._drain(queue)
        return out

    def close(self) -> None:
        """Stop the monitor (what it queued can still be taken; the channel is not made anew after this)."""
        self.closed = True
        _stop(self.channel)


def _stop(channel) -> None:
    try:
        channel.stopMonitor()
    except Exception:  # a channel that never connected
        pass


class Preview:
    """Previews on PV Access (a pvapy server): ``CH`` the object's phase and ``CH:amplitude`` its amplitude
    (NTNDArray, float32, uniqueId = the preview's number), ``CH:probe`` the amplitude of the probe's first mode,
    ``CH:cost`` {preview, cost, positions}."""

    def __init__(self, channel: str):
        pva = _pva()
        from pvapy.utility.adImageUtility import AdImageUtility

        self._make = AdImageUtility.generateNtNdArray2D
        self.pva, self.channel, self.count = pva, channel, 0
        self.cost_type = {"preview": pva.ULONG, "cost": pva.DOUBLE, "positions": pva.ULONG}
        self.server = pva.PvaServer()
        for suffix in ("", ":amplitude", ":probe"):
            self.server.addRecord(channel + suffix, pva.NtNdArray())
        self.server.addRecord(channel + ":cost", pva.PvObject(self.cost_type))

    def publish(self, obj, probe, cost: float, positions: int) -> None:
        self.count += 1
        obj = np.asarray(obj)
        for suffix, image in (("", np.angle(obj)), (":amplitude", np.abs(obj)),
                              (":probe", np.abs(np.asarray(probe).reshape((-1,) + probe.shape[-2:])[0]))):
            self.server.update(self.channel + suffix,
                               self._make(self.count, np.ascontiguousarray(image, dtype=np.float32)))
        self.server.update(self.channel + ":cost", self.pva.PvObject(self.cost_type, {
            "preview": self.count, "cost": float(cost), "positions": int(positions)}))

