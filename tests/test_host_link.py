"""The edge's timing of a frame's arrival, a link throttled by a trace, and the edge's advertised load."""

import os
import threading
import time
import tty

from contracts.protocol import Frame, Offload, encode
from host.edge import EdgeLoad
from host.link import Arrival, open_serial
from host.relay import Relay
from host.simulator import EdgeView


def test_an_arrival_is_timed_only_when_it_came_slowly_enough_to_time():
    assert Arrival(5, 400, 0.01).bps() == 320_000  # 400 bytes after the first read, in 10 ms
    assert Arrival(3, 400, 0.01).bps() == 0  # too few reads
    assert Arrival(5, 400, 0.001).bps() == 0  # too quick
    assert Arrival(9, 10**9, 0.5).bps() == 2**32 - 1  # saturates at u32


def test_the_edge_view_smooths_as_the_firmware_core_does():
    """The numbers of test_core.c's test_edge_results_smooth_the_link_estimate_and_report_the_wait."""
    view = EdgeView()
    view.observe(1_000_000, 4000)
    assert (view.link_bps, view.edge_wait_us) == (1_000_000, 4000)  # the first measurement sets it
    view.observe(200_001, 0)
    assert (view.link_bps, view.edge_wait_us) == (600_000, 0)
    view.observe(0, 7)  # not measured: kept
    assert (view.link_bps, view.edge_wait_us) == (600_000, 7)
    view.observe(2**32 - 1, 0)
    assert view.link_bps == (600_000 + 2**32 - 1) >> 1


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


def test_a_relay_throttled_by_a_trace_is_timed_at_the_traces_throughput():
    dev_master, dev_slave = _pty()
    edge_master, edge_slave = _pty()
    relay = Relay(dev_master, edge_master, set(), bandwidth=(160_000.0, 40_000.0))
    relay.start()
    edge = open_serial(os.ttyname(edge_slave), 115200)
    try:
        for rid, want in ((1, 160_000), (2, 40_000), (3, 160_000)):
            wire = encode(Offload(1, (1, 500), 0.5, 0, 0, 0, 0, bytes(range(250)) * 2), rid)
            t0 = time.perf_counter()
            os.write(dev_slave, wire)
            got = []
            while not got and time.perf_counter() - t0 < 5:
                got = [(f, a) for f, a in edge.receive_timed(0.05) if isinstance(f, Frame)]
            took = time.perf_counter() - t0
            assert len(got) == 1 and got[0][0].request_id == rid
            assert abs(got[0][1].bps() / want - 1) < 0.15, (rid, got[0][1])
            assert took >= 8 * (len(wire) - 32) / want  # not faster than the trace lets it
    finally:
        relay.stop()
        edge.close()
        for fd in (dev_master, dev_slave, edge_master):
            os.close(fd)


def test_the_edge_advertises_the_others_in_service_times_its_mean_service_time():
    load = EdgeLoad()
    with load.serving():
        assert load.wait_us() == 0  # nothing served yet, no other in service
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with load.serving():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with load.serving():
        assert load.wait_us() == load.total_us // load.served > 0  # one other in service
    release.set()
    thread.join()
    with load.serving():
        assert load.wait_us() == 0
