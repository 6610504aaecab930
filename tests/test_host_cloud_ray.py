"""The cloud tier on Ray Serve: a local Ray instance, one replica, the bridge's HTTP client against it."""

import http.client
import signal
import subprocess
import sys
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from contracts.protocol import MAX_FRAME, Result, Tier, encode
from host import demo
from host.cloud_http import HttpCloudClient
from host.edge import EdgeService
from tests.test_host_edge import _expected, bundle, offloads  # noqa: F401 (fixtures)

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[test,cloud]'")
pytestmark = pytest.mark.ray

TOKEN = "0123456789abcdef0123"


@pytest.fixture(scope="module")
def cloud_url(bundle):  # noqa: F811
    from host import cloud_ray

    local = cloud_ray.start_ray(num_cpus=1)
    try:
        opts = cloud_ray.RayOptions(port=cloud_ray.free_port("127.0.0.1"), max_batch=4, token=TOKEN)
        yield cloud_ray.deploy(bundle, opts)
    finally:
        cloud_ray.stop_ray(local)


def test_the_ray_cloud_command_serves_until_ctrl_c(bundle, offloads, tmp_path):  # noqa: F811
    """Runs before the module's deployment (one local Ray at a time on a small machine)."""
    log = tmp_path / "cloud.log"
    argv = ["cloud", "--engine", "ray", "--bundle", str(bundle.root), "--listen", "127.0.0.1:0", "--max-batch", "2"]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "host", *argv], stdout=out, stderr=out, text=True)
    try:
        end = time.monotonic() + 120
        while "serving on " not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()
            time.sleep(0.1)
        url = log.read_text().split("serving on ")[1].split()[0]
        assert HttpCloudClient(url, bundle.model_hash).offload(offloads[0][1]).tier == Tier.CLOUD
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "stopped" in text, text
    assert all(" host" in line for line in text.splitlines() if line and not line.startswith("serving on")), text


def test_demo_with_the_ray_cloud_matches_offline(bundle):  # noqa: F811
    opts = demo.DemoOptions(samples=16, cloud=True, cloud_engine="ray", edge_slices=1, deadline_ms=3000)
    summary = demo.run(bundle, opts)
    assert summary["answered"] == 16 and summary["duplicates"] == 0 and summary["decisions_match"] is True
    by_tier = summary["answers_by_tier"]
    assert sum(by_tier.values()) == 16 and min(by_tier.values()) > 0, by_tier


def _post(url, body, headers):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_ray_cloud_answers_like_the_offline_chain(bundle, offloads, cloud_url):  # noqa: F811
    edge = EdgeService(bundle, HttpCloudClient(cloud_url, bundle.model_hash, TOKEN), edge_slices=0)
    expected = _expected(bundle, edge_slices=0)
    for n, offload in offloads[:12]:
        outcome = edge.serve(offload)
        assert outcome.answer == expected[n] and outcome.answer.tier == Tier.CLOUD
        assert outcome.timings_ms["cloud"] > 0


def test_ray_cloud_refuses_other_models_tokens_and_sizes(bundle, offloads, cloud_url):  # noqa: F811
    frame = encode(offloads[0][1], 5)
    good = {"x-model-hash": bundle.model_hash, "Authorization": f"Bearer {TOKEN}"}
    status, body = _post(cloud_url, frame, good)
    assert status == 200 and body.endswith(b"\x00")
    status, body = _post(cloud_url, frame, {**good, "x-model-hash": "ab" * 32})
    assert status == 409 and f"serves model {bundle.model_hash}, not {'ab' * 32}".encode() in body
    status, body = _post(cloud_url, frame, {"x-model-hash": bundle.model_hash})
    assert status == 401 and b"token" in body
    status, body = _post(cloud_url, b"\x01" * (MAX_FRAME + 1), good)
    assert status == 413
    status, body = _post(cloud_url, b"\x01\x02\x03", good)
    assert status == 400 and b"not a frame" in body
    # The client turns every refusal into None: the edge answers from its own exits.
    assert HttpCloudClient(cloud_url, "ab" * 32, TOKEN).offload(offloads[0][1]) is None
    assert HttpCloudClient(cloud_url, bundle.model_hash).offload(offloads[0][1]) is None
    # An offload this tier cannot continue is answered with an ERROR frame, as over TCP.
    wrong = replace(offloads[0][1], zero_point=offloads[0][1].zero_point + 1)
    assert HttpCloudClient(cloud_url, bundle.model_hash, TOKEN).offload(wrong) is None


def test_ray_cloud_late_or_unreachable_gives_none_within_the_deadline(bundle, offloads, cloud_url):  # noqa: F811
    client = HttpCloudClient(cloud_url, bundle.model_hash, TOKEN)
    assert isinstance(client.offload(offloads[0][1]), Result)
    assert client.offload(replace(offloads[0][1], deadline_left_us=1)) is None  # late
    assert isinstance(client.offload(offloads[0][1]), Result)  # and the next one is served again
    gone = HttpCloudClient("http://127.0.0.1:9/offload", bundle.model_hash, TOKEN)  # nothing listens on port 9
    assert gone.offload(offloads[0][1]) is None
