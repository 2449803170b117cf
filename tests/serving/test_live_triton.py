"""Against a real Triton server (tests/serving/conftest.py `triton`): the python-platform
repositories of the demo bundle at FP32, FP16 and INT8 answer as `trtdeploy infer` does, batch
under concurrency, hold a bounded load, and refuse bad requests without going down.

Exact equality is expected between the server and the local runs: both run the very same ONNX
bytes with the same ONNX Runtime release (1.32.0 here and in the stub's environment) and the
same preprocessing code on the same file bytes (the repository carries a copy of deploy), and
ONNX Runtime's CPU kernels give each sample the same result whatever batch it is in (checked
below on the local runner); so the tolerance is zero, and any difference is a bug.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from deploy.cli import main
from deploy.data.preprocess import Preprocess
from deploy.runners.ort import OrtRunner
from deploy.runners.triton import ServerError, TritonRunner

from .conftest import PRECISIONS

FILES_PER_CLASS = 2


def heldout_files(digits_images, per_class: int = FILES_PER_CLASS):
    return [p for d in sorted(digits_images[1].iterdir()) for p in sorted(d.glob("*.png"))[:per_class]]


def local_outputs(bundle, precision: str, files) -> dict[str, np.ndarray]:
    from deploy.bundle import ONNX_FILES
    from deploy.bundle import open_bundle

    pre = Preprocess.from_json(open_bundle(bundle).preprocessing)
    with OrtRunner(bundle / ONNX_FILES[precision]) as runner:
        return runner.infer({"input": np.stack([pre.load(f) for f in files])})


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_ensemble_answers_every_image_as_trtdeploy_infer_does(triton, serving_bundle, digits_images, precision,
                                                                  capsys):
    files = heldout_files(digits_images)
    with TritonRunner(triton.url, f"digits_{precision}_ensemble") as ensemble:
        served = ensemble.infer_images([f.read_bytes() for f in files])
    if precision == "fp32":  # `trtdeploy infer` runs the FP32 ONNX
        assert main(["infer", str(serving_bundle), *map(str, files), "--json", "--top-k", "10"]) == 0
        shown = json.loads(capsys.readouterr().out)
        for row, item in zip(served["predictions"], shown):
            assert {t["class"]: t["score"] for t in item["top"]} == {c: float(p) for c, p in enumerate(row)}
    local = local_outputs(serving_bundle, precision, files)
    for name in ("logits", "predictions"):
        np.testing.assert_array_equal(served[name], local[name])


def test_local_onnx_runtime_answers_do_not_depend_on_the_batch(serving_bundle, digits_images):
    files = heldout_files(digits_images)
    whole = local_outputs(serving_bundle, "fp32", files)["logits"]
    one_by_one = np.concatenate([local_outputs(serving_bundle, "fp32", [f])["logits"] for f in files])
    np.testing.assert_array_equal(whole, one_by_one)


@pytest.mark.parametrize("precision, model", [("fp32", "digits_fp32_ensemble"), ("fp16", "digits_fp16_ensemble"),
                                              ("int8", "digits_int8_ensemble"), ("fp32", "digits_fp32")])
def test_parity_passes_through_the_server(triton, serving_bundle, digits_images, tmp_path, capsys, precision, model):
    out = tmp_path / "report"
    code = main(["parity", str(serving_bundle), "--data", str(digits_images[1]), "--num-images", "48",
                 "--backends", f"ort-{precision}", "--triton", triton.url, "--triton-model", model, "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    result = json.loads((out / "parity.json").read_text())
    entry = result["backends"][f"triton-{precision}"]
    assert entry["status"] == "ran" and entry["pass"] is True
    ours = result["backends"][f"ort-{precision}"]["outputs"]["logits"]
    # The server runs the same ONNX on the same preprocessing: its errors against the reference are ONNX Runtime's.
    assert entry["outputs"]["logits"]["max_abs_scaled"] == ours["max_abs_scaled"]


def test_under_concurrency_the_server_forms_batches(triton, serving_bundle):
    from deploy.bundle.reference import load_reference_npz
    from deploy.serving.load import LoadConfig, run_load
    from deploy.bundle import open_bundle

    x = load_reference_npz(open_bundle(serving_bundle))["input"]
    with TritonRunner(triton.url, "digits_fp32") as runner:
        result, _ = run_load(runner, lambda k, n: {"input": x[k % len(x)][None]}, LoadConfig(8, requests=160))
    stats = result["server"]["digits_fp32"]
    assert stats["requests"] == 160 and sum(b * n for b, n in stats["batch_sizes"].items()) == 160
    assert max(stats["batch_sizes"]) > 1 and stats["executions"] < 160, stats


def test_a_bounded_load_loses_and_duplicates_nothing(triton, serving_bundle, digits_images):
    from deploy.serving.load import LoadConfig, run_load

    files = heldout_files(digits_images, per_class=5)
    data = [np.array([f.read_bytes()], dtype=np.object_) for f in files]
    local = local_outputs(serving_bundle, "fp32", files)["logits"]
    with TritonRunner(triton.url, "digits_fp32_ensemble") as runner:
        result, answers = run_load(runner, lambda k, n: {"image": np.stack([data[k % len(data)]])},
                                   LoadConfig(8, requests=1600), keep_answers=True)
    print(f"\nload 8 clients x 200 requests: {result['throughput_requests_per_s']:.0f} requests/s, "
          f"p99 {result['latency_ms']['p99']:.1f} ms, server batches {result['server']['digits_fp32']['batch_sizes']}")
    assert result["errors"] == {} and result["requests_ok"] == 1600
    assert [a.index for a in answers] == list(range(1600))  # each request answered once
    for a in answers:
        np.testing.assert_array_equal(a.outputs["logits"][0], local[a.index % len(files)])
    assert result["server"]["digits_fp32_ensemble"]["requests"] == 1600


def _good(runner: TritonRunner, image: bytes, want: np.ndarray) -> None:
    np.testing.assert_array_equal(runner.infer_images([image])["logits"][0], want)


@pytest.mark.parametrize("feed, model, message", [
    ({"input": np.zeros((1, 3, 16, 16), np.float32)}, "digits_fp32", "unexpected shape for input 'input'"),
    ({"input": np.zeros((1, 3, 32, 32), np.float64)}, "digits_fp32", "expects 'FP32'"),
    ({"image": np.array([[b"not a png"]], dtype=np.object_)}, "digits_fp32_ensemble", "not a readable image"),
    # Triton 2.51 sizes a zero-sample request as one sample and refuses its zero bytes.
    ({"input": np.zeros((0, 3, 32, 32), np.float32)}, "digits_fp32", "byte size mismatch for input 'input'"),
    ({"input": np.zeros((1, 3, 32, 32), np.float32)}, "no_such_model", "Request for unknown model: 'no_such_model'"),
])
def test_a_bad_request_gets_a_clear_error_and_the_server_goes_on(triton, serving_bundle, digits_images, feed, model,
                                                                 message):
    (good,) = heldout_files(digits_images, per_class=1)[:1]
    want = local_outputs(serving_bundle, "fp32", [good])["logits"][0]
    with TritonRunner(triton.url, "digits_fp32_ensemble") as ensemble:
        bad = TritonRunner(triton.url, model)
        bad.metadata = {"inputs": [], "outputs": [{"name": "logits"}]}  # sent as is: the server is what checks it
        try:
            with pytest.raises(ServerError) as e:
                bad.request(feed)
        finally:
            bad.close()  # an open connection would hold the server's shutdown for its exit timeout
        print(f"\n{model} {[(k, v.dtype.name, v.shape) for k, v in feed.items()]}: {e.value}")
        assert message in str(e.value)
        _good(ensemble, good.read_bytes(), want)


def test_requests_from_many_threads_each_use_their_own_client(triton):
    runner = TritonRunner(triton.url, "digits_fp32")
    runner.activate()
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(id(runner.clients.get()))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4
    runner.close()


def test_bench_writes_the_load_test_and_the_server_stats(triton, serving_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(serving_bundle), "--triton", triton.url, "--triton-model", "digits_int8",
                 "--concurrency", "4", "--requests", "200", "--batch", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["requests_ok"] == 200 and result["batch"] == 2 and result["errors"] == {}
    lat = result["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    server = result["server"]["digits_int8"]
    assert server["requests"] == 200 and server["inferences"] == 400
    assert server["queue_us_per_request"] is not None and server["compute_infer_us_per_request"] > 0
    assert "requests/s" in capsys.readouterr().out


def test_bench_against_a_server_that_is_not_there_is_one_error_line(serving_bundle, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["bench", str(serving_bundle), "--triton", f"127.0.0.1:{port}", "--requests", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: Triton at 127.0.0.1:{port}: ")
