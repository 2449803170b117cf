"""TensorRT versions parsed without `packaging`, and TensorRT before 10 refused on import."""
from __future__ import annotations

import sys

import pytest

from deploy.errors import ToolMissingError
from deploy.trt.versions import TrtVersion, check_supported, import_tensorrt, parse_release, parse_version

from .fakes import make_fake_trt


@pytest.mark.parametrize("text, release, pre, post, local", [
    ("10.3.0", (10, 3, 0), None, None, ""),          # JetPack 6.1/6.2
    ("10.3.0.30", (10, 3, 0, 30), None, None, ""),
    ("11.4.0.106", (11, 4, 0, 106), None, None, ""),  # PyPI today
    ("8.6.2.3", (8, 6, 2, 3), None, None, ""),        # JetPack 6.0
    ("10.16.1.11.post1", (10, 16, 1, 11), None, 1, ""),
    ("8.6.1.post1", (8, 6, 1), None, 1, ""),           # the PyPI metapackage's form
    ("10.0.0b6", (10, 0, 0), (1, 6), None, ""),       # PyPI's 10.0 early access
    ("10.3.0+cuda12.6", (10, 3, 0), None, None, "cuda12.6"),
])
def test_parse_release(text, release, pre, post, local):
    v = parse_release(text)
    assert (v.release, v.pre, v.post, v.local, str(v)) == (release, pre, post, local, text)
    assert (v.major, v.minor) == release[:2]


@pytest.mark.parametrize("text", ["", "ten", "10.x", "10..3", "10.3.0-foo", ".10"])
def test_unparsable_versions(text):
    with pytest.raises(ValueError):
        parse_release(text)
    with pytest.raises(ToolMissingError, match="cannot parse the TensorRT version"):
        parse_version(text)


ORDERED = ["8.6.1", "8.6.1.post1", "8.6.2.3", "9.3.0", "10.0.0b6", "10.0.0rc1", "10.0.0", "10.3.0", "10.3.0.26",
           "10.3.0.30", "10.13.3.9", "10.16.1.11", "10.16.1.11.post1", "11.4.0.106"]


def test_order_is_numeric_not_textual():
    parsed = [parse_release(t) for t in ORDERED]
    assert parsed == sorted(reversed(parsed))
    assert parse_release("9.3.0") < parse_release("10.3.0")  # "9.3.0" > "10.3.0" as strings
    assert parse_release("10.3") == parse_release("10.3.0") and hash(parse_release("10.3")) == hash(parse_release("10.3.0"))
    assert parse_release("10.3.0.30") != parse_release("10.3.0.26")
    assert parse_version(make_fake_trt("10.16.1.11")) == parse_release("10.16.1.11")
    assert isinstance(parse_version(parse_release("11.4.0.106")), TrtVersion)


def test_order_agrees_with_packaging_where_it_is_installed():
    version = pytest.importorskip("packaging.version", reason="the workstation check of the parser")
    for a in ORDERED:
        for b in ORDERED:
            assert (parse_release(a) < parse_release(b)) == (version.Version(a) < version.Version(b)), (a, b)
            assert (parse_release(a) == parse_release(b)) == (version.Version(a) == version.Version(b)), (a, b)


@pytest.mark.parametrize("version", ["8.6.2", "8.6.2.3", "9.3.0"])
def test_tensorrt_before_10_refused_on_import(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt(version))
    with pytest.raises(ToolMissingError) as e:
        import_tensorrt()
    message = str(e.value)
    assert message.startswith(f"TensorRT {version} found; trtdeploy supports TensorRT 10.x and 11.x")
    assert "JetPack 6.0 ships TensorRT 8.6.2" in message and "\n" not in message


@pytest.mark.parametrize("version", ["10.3.0", "10.16.1.11", "11.4.0.106"])
def test_supported_tensorrt_imports(monkeypatch, version):
    fake = make_fake_trt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert import_tensorrt() is fake
    assert check_supported(version).major in (10, 11)


def test_cli_says_one_line_for_tensorrt_8(monkeypatch, default_bundle_dir, capsys):
    from deploy.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("8.6.2"))
    assert main(["build", str(default_bundle_dir), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT 8.6.2 found; trtdeploy supports TensorRT 10.x and 11.x")
    assert err.count("\n") == 1
