"""Streaming: frames and positions joined by trigger count, over real PV Access (pvapy servers and clients on
127.0.0.1 only: EPICS_PVA_AUTO_ADDR_LIST=NO, EPICS_PVA_ADDR_LIST=127.0.0.1, the server bound to 127.0.0.1, ports
of their own)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from ptyhpc.compare import object_errors
from ptyhpc.io import load
from ptyhpc.io.join import Joiner
from ptyhpc.io.product import read_product
from ptyhpc.io.pva import schedule

SMALL = ["--object-size", "192", "--probe-size", "64", "--positions", "150", "--probe-diameter", "22",
         "--aperture-radius", "8"]
GEOMETRY = ["--energy-ev", "10000", "--distance", "2", "--detector-pixel", "75e-6"]


@pytest.fixture
def pva_env():
    pytest.importorskip("pvaccess")
    env = dict(os.environ, EPICS_PVA_AUTO_ADDR_LIST="NO", EPICS_PVA_ADDR_LIST="127.0.0.1",
               EPICS_PVAS_INTF_ADDR_LIST="127.0.0.1", EPICS_PVA_SERVER_PORT="15175",
               EPICS_PVA_BROADCAST_PORT="15176")
    return env


def test_joiner_pairs_only_by_trigger_count():
    rng = np.random.default_rng(0)
    frames = {t: np.full((4, 4), t) for t in range(1, 101)}
    xy = {t: (t * 1e-6, -t * 1e-6) for t in range(1, 101)}
    j = Joiner()
    order = rng.permutation(np.arange(1, 101))
    dropped = set(order[:5].tolist())
    for t in order[5:]:
        j.add_frame(t, frames[t])
    for t in order[5:10]:
        j.add_frame(t, frames[t])  # duplicates, same content
    j.add_frame(int(order[10]), frames[int(order[10])] + 1)  # a duplicate that differs: a conflict, first kept
    for start in range(1, 101, 20):  # positions in chunks, after their frames
        ts = list(range(start, start + 20))
        j.add_positions(ts, [xy[t][0] for t in ts], [xy[t][1] for t in ts])
    j.add_positions([7], [1.0], [1.0])  # a duplicate position that differs
    r = j.report(expected=100)
    assert r["joined"] == 95 and r["duplicate_frames"] == 6 and r["conflicts"] == 2
    assert r["positions_without_frame"] == sorted(dropped) and r["never_arrived"] == []
    triggers, stack, x, y = j.scan()
    for t, f, a, b in zip(triggers, stack, x, y):
        assert (f == t).all() and (a, b) == xy[t]  # every pattern with its own position
    j.close()
    assert j.add_frame(500, frames[1]) == [] and j.report()["late"] == 1


def test_schedule_drops_duplicates_and_sends_positions_both_before_and_after():
    events = schedule(200, 20, shuffle=True, drop=0.05, duplicate=0.05, seed=3)
    sent = [e[1] for e in events if e[0] == "frame"]
    assert 180 <= len(set(sent)) <= 199 and len(sent) > len(set(sent))
    chunks = [(k, e) for k, e in enumerate(events) if e[0] == "positions"]
    assert sorted(e[1] for _, e in chunks) == list(range(0, 200, 20))
    before = after = 0
    for k, (_, start, stop) in chunks:
        at = [i for i, e in enumerate(events) if e[0] == "frame" and start <= e[1] < stop]
        before += k < min(at)
        after += k > max(at)
    assert before >= 3 and after >= 3


def _replay(env, data, tag, *extra):
    return subprocess.Popen([sys.executable, "-m", "ptyhpc", "replay", data, "--frames", f"{tag}:frames",
                             "--positions", f"{tag}:positions", "--start-delay", "3", "--linger", "3", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stream(env, tag, out, *extra, ranks=1):
    mpi = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    return subprocess.run(mpi + [sys.executable, "-m", "ptyhpc", "stream", "--frames", f"{tag}:frames",
                                 "--positions", f"{tag}:positions", "-o", out, *GEOMETRY, "--quiet",
                                 "--no-preview", *extra], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("route", ["receiver", "distributor"])
def test_stream_joins_shuffled_dropped_duplicated_frames_correctly(tmp_path, pva_env, route):
    """150 frames replayed shuffled, 5 % dropped, 5 % duplicated, positions in chunks of 20 before and after
    their frames: every joined pattern is the file's pattern of its trigger count with its own position, the
    dropped ones are reported, nothing is paired wrongly; then 2 ranks reconstruct the joined scan. Both routes
    of the frames: all to rank 0, or dealt to both ranks by pvapy's data distributor."""
    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL, "--initial-probe",
                    tmp_path / "p0.npy"], check=True, capture_output=True)
    tag = f"t1{route}"
    replay = _replay(pva_env, data, tag, "--shuffle", "--drop", "0.05", "--duplicate", "0.05",
                     "--positions-chunk", "20", "--rate", "300", "--seed", "5")
    out = tmp_path / "out.h5"
    r = _stream(pva_env, tag, out, "--final-epochs", "5", "--quiet-seconds", "1", "--timeout", "20", "--probe",
                tmp_path / "p0.npy", "--route", route, ranks=2)
    replay.wait(timeout=60)
    assert r.returncode == 0, r.stderr + replay.stdout.read()
    events = schedule(150, 20, True, 0.05, 0.05, 5)
    dropped = sorted(set(range(150)) - {e[1] for e in events if e[0] == "frame"})
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["positions_without_frame"] == [t + 1 for t in dropped] and dropped
    assert report["joined"] == 150 - len(dropped) and report["conflicts"] == 0
    assert report["duplicate_frames"] == sum(e[0] == "frame" for e in events) - (150 - len(dropped))
    if route == "distributor":  # each rank received a share, every frame sent exactly once
        shares = report["frames_per_rank"]
        assert len(shares) == 2 and min(shares) > 0.3 * sum(shares), shares
        assert sum(shares) == sum(e[0] == "frame" for e in events)
    d = load(data)
    original = np.fft.fftshift(d.read_patterns(np.arange(150)).intensity, axes=(-2, -1))
    with h5py.File(tmp_path / "out.scan.cxi") as f:
        triggers = f["entry_1/instrument_1/detector_1/trigger_count"][()]
        frames = f["entry_1/instrument_1/detector_1/data"][()]
    assert np.array_equal(frames, original[triggers - 1])  # each frame is its own trigger's pattern
    joined = load(tmp_path / "out.scan.cxi")
    offset = np.median(joined.scan - d.scan[triggers - 1], axis=0)
    assert np.abs(joined.scan - d.scan[triggers - 1] - offset).max() < 1e-6  # ... at its own position
    assert len(read_product(out)["scan"]) == len(triggers)


def test_stream_of_a_replay_matches_the_offline_reconstruction(tmp_path, pva_env):
    """A shuffled replay of the whole small set, then 30 epochs: the object's error within 1.1x of ``ptyhpc
    reconstruct`` of the same file with the same settings."""
    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL, "--initial-probe",
                    tmp_path / "p0.npy"], check=True, capture_output=True)
    replay = _replay(pva_env, data, "t2", "--shuffle", "--rate", "300")
    r = _stream(pva_env, "t2", tmp_path / "stream.h5", "--expected", "150", "--final-epochs", "30", "--probe",
                tmp_path / "p0.npy", "--timeout", "20")
    replay.wait(timeout=60)
    assert r.returncode == 0, r.stderr
    subprocess.run([sys.executable, "-m", "ptyhpc", "reconstruct", data, "-o", tmp_path / "offline.h5", "--epochs",
                    "30", "--probe", tmp_path / "p0.npy", "--quiet", "--no-preview"], check=True, capture_output=True)
    truth = read_product(tmp_path / "s_truth.h5")
    errors = []
    for name in ("stream.h5", "offline.h5"):
        p = read_product(tmp_path / name)
        errors.append(object_errors(p["object"], p["scan"], truth["object"], truth["scan"], 64)["object_nrmse_ramp"])
    assert errors[0] <= 1.1 * errors[1], errors


def test_a_positions_channel_that_never_appears_is_a_clear_error_on_every_rank(tmp_path, pva_env):
    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL], check=True, capture_output=True)
    replay = _replay(pva_env, data, "t3", "--rate", "50")
    r = _stream(pva_env, "t3", tmp_path / "out.h5", "--timeout", "6")  # listens to t3:positions... served
    replay.wait(timeout=60)
    assert r.returncode == 0, r.stderr  # the control: served, it works
    replay = _replay(pva_env, data, "t4", "--rate", "50")
    mpi = ["mpiexec", "-n", "2"]
    r = subprocess.run(mpi + [sys.executable, "-m", "ptyhpc", "stream", "--frames", "t4:frames", "--positions",
                              "nobody:positions", "-o", tmp_path / "x.h5", *GEOMETRY, "--timeout", "6"],
                       env=pva_env, capture_output=True, text=True, timeout=120)
    replay.kill()
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if "error" in line]
    assert any("nobody:positions: nothing received in 6 s" in line for line in lines), r.stderr
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.scan.cxi").exists()


def test_previews_are_published_while_the_scan_runs(tmp_path, pva_env):
    """Frames at 50 Hz (3 s for the scan) with --preview: epochs run while they arrive, and a plain pvapy client
    reads the previews back: phase images of the growing object that change as epochs run, the last one the
    product's object shape; the first preview comes within 5 s of the first frame. Product snapshots of the scan so
    far are written to -o while it runs (read back here as they come)."""
    import threading

    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL, "--initial-probe",
                    tmp_path / "p0.npy"], check=True, capture_output=True)
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, time, json, numpy as np, pvaccess as pva\n"
        "from pvapy.utility.adImageUtility import AdImageUtility\n"
        "seen = []\n"
        "def on(pv):\n"
        "    uid, image, *_ = AdImageUtility.reshapeNtNdArray(pv)\n"
        "    if image is not None and uid > 0:\n"
        "        seen.append((uid, image.shape, float(np.abs(image).sum())))\n"
        "c = pva.Channel('t5:preview', pva.PVA); c.subscribe('x', on); c.startMonitor()\n"
        "time.sleep(float(sys.argv[1])); c.stopMonitor()\n"
        "print(json.dumps(seen))\n")
    client = subprocess.Popen([sys.executable, script, "14"], env=pva_env, stdout=subprocess.PIPE, text=True)
    replay = _replay(pva_env, data, "t5", "--rate", "50")
    out = tmp_path / "out.h5"
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=_stream(
        pva_env, "t5", out, "--expected", "150", "--final-epochs", "10", "--probe", tmp_path / "p0.npy",
        "--preview", "t5:preview", "--preview-every", "0.2", "--timeout", "20", "--snapshot-every", "0.5")))
    thread.start()
    snapshots, mtime = [], None
    while thread.is_alive():  # the snapshots as a reader meets them: every one a whole product
        if out.exists() and out.stat().st_mtime != mtime:
            mtime = out.stat().st_mtime
            p = read_product(out)
            snapshots.append((len(p["scan"]), int(p["attrs"]["epochs"])))
        time.sleep(0.05)
    thread.join()
    replay.wait(timeout=60)
    seen = json.loads(client.communicate(timeout=60)[0])
    assert result["r"].returncode == 0, result["r"].stderr
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["epochs_while_streaming"] >= 3 and report["timings"]["first_preview"] < 5.0, report
    assert len(seen) >= 3, seen
    ids = [s[0] for s in seen]
    assert ids == sorted(ids) and len(set(s[2] for s in seen)) == len(seen)  # each preview differs
    assert tuple(seen[-1][1]) == read_product(out)["object"].shape
    during = [c for c, _ in snapshots if c < 150]
    assert len(during) >= 2 and during == sorted(during) and report["snapshots"] >= len(during), snapshots


def test_sigterm_mid_scan_writes_a_product_of_what_arrived(tmp_path, pva_env):
    """SIGTERM while frames still arrive (20 Hz): the stream ends the scan, runs one epoch over what arrived and
    writes the product (atomically) and the joined scan; exit status 128 + 15."""
    import signal
    import time

    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL], check=True, capture_output=True)
    replay = subprocess.Popen([sys.executable, "-m", "ptyhpc", "replay", data, "--frames", "t6:frames",
                               "--positions", "t6:positions", "--rate", "20", "--start-delay", "1", "--linger", "1"],
                              env=pva_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = tmp_path / "out.h5"
    stream = subprocess.Popen([sys.executable, "-m", "ptyhpc", "stream", "--frames", "t6:frames", "--positions",
                               "t6:positions", "-o", out, *GEOMETRY, "--quiet", "--no-preview", "--timeout", "20"],
                              env=pva_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(5)
    stream.send_signal(signal.SIGTERM)
    _, err = stream.communicate(timeout=120)
    replay.kill()
    assert stream.returncode == 128 + signal.SIGTERM, err
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["why"] == "signal" and 16 <= report["joined"] < 150, report
    assert len(read_product(out)["scan"]) == report["joined"]
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


@pytest.mark.parametrize("gap", [1, 8])
def test_a_frames_server_that_restarts_mid_scan(tmp_path, pva_env, gap):
    """The detector's server dies after 60 frames (no end marker) and a new one, started ``gap`` seconds later,
    serves the whole scan again: the stream reconnects, joins every frame once (the 60 repeated ones dropped as
    duplicates, none paired twice or wrongly) and ends at the end marker. After 8 s pvAccess alone would search
    for the lost channels next about 14 s after the loss, when the new server (sending 3 s after it starts, for
    1.5 s) is done; ``io.pva.Subscription`` makes them anew every second (scripts/bench_reconnect.py)."""

    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL], check=True, capture_output=True)
    first = _replay(pva_env, data, "t7", "--rate", "100", "--stop-after", "60", "--positions-chunk", "10")
    out = tmp_path / "out.h5"
    stream = subprocess.Popen([sys.executable, "-m", "ptyhpc", "stream", "--frames", "t7:frames", "--positions",
                               "t7:positions", "-o", out, *GEOMETRY, "--quiet", "--no-preview", "--timeout", "30",
                               "--final-epochs", "2"], env=pva_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    first.wait(timeout=60)
    time.sleep(gap)
    second = _replay(pva_env, data, "t7", "--rate", "100", "--positions-chunk", "10")
    _, err = stream.communicate(timeout=180)
    second.wait(timeout=60)
    assert stream.returncode == 0, err
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["joined"] == 150 and report["conflicts"] == 0 and report["why"] == "end marker", report
    assert report["duplicate_frames"] >= 50, report  # the restarted server's first 60 frames again
    assert min(report["channels_made_anew"].values()) >= 1, report  # away for longer than REOPEN
    d = load(data)
    original = np.fft.fftshift(d.read_patterns(np.arange(150)).intensity, axes=(-2, -1))
    with h5py.File(tmp_path / "out.scan.cxi") as f:
        triggers = f["entry_1/instrument_1/detector_1/trigger_count"][()]
        assert np.array_equal(f["entry_1/instrument_1/detector_1/data"][()], original[triggers - 1])


def test_a_stream_started_long_before_the_detector(tmp_path, pva_env):
    """The stream is started 16 s before the detector's server (as at a beamline: the reconstruction waits for the
    scan). pvAccess alone would search for the channels next about 29 s after it made them, when the server (sending
    3 s after it starts, for 1.5 s) is gone: with REOPEN infinite the stream received nothing in its 60 s (2 of 2
    runs). Made anew every second, they find it before it sends: every frame joined."""
    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL], check=True, capture_output=True)
    out = tmp_path / "out.h5"
    stream = subprocess.Popen([sys.executable, "-m", "ptyhpc", "stream", "--frames", "t10:frames", "--positions",
                               "t10:positions", "-o", out, *GEOMETRY, "--quiet", "--no-preview", "--timeout", "60",
                               "--final-epochs", "2"], env=pva_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(16)
    replay = _replay(pva_env, data, "t10", "--rate", "100", "--positions-chunk", "10")
    _, err = stream.communicate(timeout=180)
    replay.wait(timeout=60)
    assert stream.returncode == 0, err
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["joined"] == 150 and report["why"] == "end marker", report
    assert min(report["channels_made_anew"].values()) >= 1, report


def test_a_profile_names_the_channels_and_the_position_fields(tmp_path, pva_env):
    """A beamline's own positions layout ({triggerCount, posX, posY}, no end flag) served by a plain pvapy server,
    read through a TOML profile: channel names, fields, geometry and --expected from the profile; every frame
    joined with its own position. A profile with an unknown key is refused naming it."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[stream]\nframes = "a"\nchanels = "b"\n')
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "stream", "--profile", bad, "-o", tmp_path / "x.h5"],
                       capture_output=True, text=True, env=pva_env)
    assert r.returncode != 0 and "unknown key(s) ['chanels']" in r.stderr, r.stderr
    profile = tmp_path / "beamline.toml"
    profile.write_text('[stream]\nframes = "bl:det"\npositions = "bl:scan"\nexpected = 40\nfinal_epochs = 2\n'
                       'energy_ev = 10000\ndistance = 2\ndetector_pixel = 75e-6\n'
                       '[stream.fields]\ntrigger = "triggerCount"\nx = "posX"\ny = "posY"\nlast = ""\n')
    server = tmp_path / "server.py"
    server.write_text(
        "import time, numpy as np, pvaccess as pva\n"
        "from pvapy.utility.adImageUtility import AdImageUtility\n"
        "t = {'triggerCount': [pva.ULONG], 'posX': [pva.DOUBLE], 'posY': [pva.DOUBLE]}\n"
        "s = pva.PvaServer(); s.addRecord('bl:det', pva.NtNdArray()); s.addRecord('bl:scan', pva.PvObject(t))\n"
        "time.sleep(3)\n"
        "rng = np.random.default_rng(0)\n"
        "for k in range(40):\n"
        "    s.update('bl:det', AdImageUtility.generateNtNdArray2D(k + 1, np.full((64, 64), k + 1, np.uint16)))\n"
        "    if k % 10 == 9:\n"
        "        ts = list(range(k - 8, k + 2))\n"
        "        s.update('bl:scan', pva.PvObject(t, {'triggerCount': ts, 'posX': [1e-7 * v for v in ts],\n"
        "                                               'posY': [3e-7 * (v % 7) for v in ts]}))\n"
        "    time.sleep(0.02)\n"
        "time.sleep(5)\n")
    served = subprocess.Popen([sys.executable, server], env=pva_env)
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "stream", "--profile", profile, "-o", tmp_path / "bl.h5",
                        "--quiet", "--no-preview"], capture_output=True, text=True, env=pva_env, timeout=180)
    served.kill()
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "bl.scan.cxi") as f:
        triggers = f["entry_1/instrument_1/detector_1/trigger_count"][()]
        frames = f["entry_1/instrument_1/detector_1/data"][()]
        translation = f["entry_1/sample_1/geometry_1/translation"][()]
    assert list(triggers) == list(range(1, 41))
    assert all((frame == t).all() for frame, t in zip(frames, triggers))
    assert np.allclose(-translation[:, 0], 1e-7 * triggers) and np.allclose(-translation[:, 1], 3e-7 * (triggers % 7))


def test_an_impossible_output_is_refused_before_anything_is_received(tmp_path, pva_env):
    """An output in a folder that does not exist, and no channel served: the output check comes first, in well
    under the 30 s timeout."""
    import time

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ptyhpc", "stream", "--frames", "none:f", "--positions", "none:p",
                        "-o", tmp_path / "missing" / "out.h5", *GEOMETRY], capture_output=True, text=True,
                       env=pva_env, timeout=60)
    assert r.returncode != 0 and "out.h5" in r.stderr and time.monotonic() - t0 < 20, r.stderr
    assert "nothing received" not in r.stderr


def test_frames_through_a_beamlines_pvapy_hpc_consumers(tmp_path, pva_env):
    """pvapy's streaming framework in between, as a beamline runs it: two ``pvapy-hpc-consumer`` processes share
    the detector's frames through the data distributor (each passes every other frame to its output channel with
    the framework's own processor); ``ptyhpc stream`` subscribes to both outputs and joins them with the
    positions: every frame once, each its own trigger's pattern."""
    consumer = shutil.which("pvapy-hpc-consumer", path=os.path.dirname(sys.executable))
    if consumer is None:
        pytest.skip("pvapy-hpc-consumer not installed")
    data = tmp_path / "s.cxi"
    subprocess.run([sys.executable, "-m", "ptyhpc", "simulate", data, *SMALL], check=True, capture_output=True)
    consumers = subprocess.Popen([consumer, "--input-channel", "t9:frames", "--output-channel", "t9:proc:*:out",
                                  "--n-consumers", "2", "--distributor-updates", "1", "--runtime", "60",
                                  "--report-period", "100", "--disable-curses", "--processor-class",
                                  "pvapy.hpc.userDataProcessor.UserDataProcessor"], start_new_session=True,
                                 env=pva_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        replay = subprocess.Popen([sys.executable, "-m", "ptyhpc", "replay", data, "--frames", "t9:frames",
                                   "--positions", "t9:positions", "--start-delay", "8", "--linger", "3", "--rate",
                                   "100", "--shuffle"], env=pva_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        r = subprocess.run([sys.executable, "-m", "ptyhpc", "stream", "--frames", "t9:proc:1:out,t9:proc:2:out",
                            "--positions", "t9:positions", "-o", tmp_path / "out.h5", *GEOMETRY, "--quiet",
                            "--no-preview", "--final-epochs", "2", "--expected", "150", "--timeout", "30"],
                           env=pva_env, capture_output=True, text=True, timeout=300)
        replay.wait(timeout=60)
    finally:  # the consumers and their worker processes
        os.killpg(consumers.pid, signal.SIGTERM)
        try:
            log = consumers.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            os.killpg(consumers.pid, signal.SIGKILL)
            log = consumers.communicate()[0]
    assert r.returncode == 0, r.stderr + log
    report = json.loads((tmp_path / "out.stream.json").read_text())
    assert report["joined"] == 150 and report["duplicate_frames"] == 0, report
    d = load(data)
    with h5py.File(tmp_path / "out.scan.cxi") as f:
        triggers = f["entry_1/instrument_1/detector_1/trigger_count"][()]
        frames = f["entry_1/instrument_1/detector_1/data"][()]
    original = np.fft.fftshift(d.read_patterns(np.arange(150)).intensity, axes=(-2, -1))
    assert np.array_equal(triggers, np.arange(1, 151)) and np.array_equal(frames, original)
