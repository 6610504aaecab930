"""The upper tiers on their own: the edge (and cloud over TCP) continue an offload exactly like the offline chain."""

import threading
from dataclasses import replace

import numpy as np
import pytest

from contracts.protocol import Offload, Result, Tier
from converter import verify
from earlyexit import data
from host import bundle as bundles
from host import offline
from host.cloud import CloudClient, CloudServer
from host.edge import EdgeService
from host.tier import TierRunner, split_outputs
from tests.test_host_bundle import tiny_bundle

SAMPLES = 48


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    return bundles.load(tiny_bundle(request, tmp_path_factory))


@pytest.fixture(scope="module")
def offloads(bundle):
    """(sample index, the device's OFFLOAD) for every sample the device offloads."""
    x = data.load("synthetic", "test").x[:SAMPLES]
    device = verify.tflm_runner(bundle.slices[0])
    policy, trunk = bundle.policy(1), bundle.slices[0].trunk
    out = []
    for n, image in enumerate(verify.quantize_images(x, bundle.input_lut())):
        logits, h = split_outputs(device(image[None]))
        if policy.decide(0, logits) == 2:
            out.append((n, Offload(1, h.shape, trunk.scale, trunk.zero_point, 900, 12, 10**6, h.tobytes())))
    assert 0 < len(out) < SAMPLES
    return out


def _expected(bundle, edge_slices=None):
    decisions = offline.evaluate(bundle, data.load("synthetic", "test").x[:SAMPLES], edge_slices)
    return [Result(d.label, d.confidence_q15, d.exit, d.tier) for d in decisions]


def test_edge_answers_every_offload_like_the_offline_chain(bundle, offloads):
    edge, expected = EdgeService(bundle), _expected(bundle)
    for n, offload in offloads:
        assert edge.check(offload) is None
        outcome = edge.serve(offload)
        assert outcome.answer == expected[n] and outcome.forward is None
        assert outcome.timings_ms["edge"] >= 0


def test_optimized_kernels_stay_within_one_lsb_of_the_reference(bundle, offloads):
    """LiteRT's optimized kernels (bridge --edge-kernels optimized) round differently, by one step at most."""
    reference, optimized = TierRunner(bundle, 2, 3, Tier.EDGE), TierRunner(bundle, 2, 3, Tier.EDGE, optimized=True)
    for _, offload in offloads:
        h = np.frombuffer(offload.tensor, np.int8).reshape(offload.shape)
        for k in (1, 2):
            (ref_logits, ref_trunk), (opt_logits, opt_trunk) = (
                split_outputs(r.runners[k](h)) for r in (reference, optimized)
            )
            assert np.abs(ref_logits.astype(int) - opt_logits).max() <= 1
            h = ref_trunk
            if ref_trunk is not None:
                assert np.abs(ref_trunk.astype(int) - opt_trunk).max() <= 1


def test_edge_hands_up_to_the_cloud_tier_after_its_slices(bundle, offloads):
    edge = TierRunner(bundle, 2, 2, Tier.EDGE)
    cloud = TierRunner(bundle, 2, 3, Tier.CLOUD)
    expected = _expected(bundle, edge_slices=1)
    forwarded = 0
    for n, offload in offloads:
        outcome = edge.run(offload)
        if outcome.forward is None:
            assert outcome.answer == expected[n] and expected[n].tier == Tier.EDGE
            continue
        forwarded += 1
        up = outcome.forward
        assert up.exit == 2 and up.shape == bundle.slices[1].trunk.shape and up.energy_spent_uj == 12
        assert up.time_spent_us >= 900 and up.deadline_left_us <= 10**6
        assert outcome.answer.fallback and outcome.answer.exit == 2 and outcome.answer.tier == Tier.EDGE
        assert cloud.check(up) is None and cloud.run(up).answer == expected[n]
    assert forwarded > 0


def test_a_tier_refuses_what_it_cannot_continue(bundle, offloads):
    edge = EdgeService(bundle)
    good = offloads[0][1]
    assert "not this model's" in edge.check(replace(good, scale=good.scale * 1.01))
    assert "not this model's" in edge.check(replace(good, zero_point=good.zero_point + 1))
    h = np.zeros((1, 4, 4, 8), np.int8)
    assert "not this model's" in edge.check(replace(good, shape=h.shape, tensor=h.tobytes()))
    assert "continues from exits 1..3, not 0" in edge.check(replace(good, exit=0))
    assert "model's last" in edge.check(replace(good, exit=3))


def test_cloud_serves_offloads_over_loopback_tcp(bundle, offloads):
    server = CloudServer(bundle, ("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        client = CloudClient(*server.server_address[:2])
        edge = EdgeService(bundle, client, edge_slices=0)
        expected = _expected(bundle, edge_slices=0)
        for n, offload in offloads[:8]:
            outcome = edge.serve(offload)
            assert outcome.answer == expected[n] and outcome.answer.tier == Tier.CLOUD
            assert "cloud" in outcome.timings_ms
    finally:
        server.shutdown()
        server.close()
    # The cloud is gone (now and on reconnecting): the edge ran no slice, so it has no answer either.
    assert edge.serve(offloads[0][1]).answer is None
    assert edge.serve(offloads[0][1]).answer is None
