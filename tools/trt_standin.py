"""Real TensorRT (and pycuda) Python bindings, loadable on a machine without TensorRT.

Installs the PyPI bindings wheels into cache directories and generates stand-in shared
libraries (every symbol a stub returning 0) for the libraries they link against, so the
bindings import and every class, enum member, method and docstring signature can be
checked. Nothing can *run*: this checks names, not behaviour.

    python tools/trt_standin.py                 # TensorRT 10.16.1.11 + 11.4.0.106 into .cache/
    python tools/trt_standin.py --pycuda        # also build pycuda 2026.1 against a stand-in libcuda
    python tools/trt_standin.py --print-env 10  # the environment that imports `tensorrt_bindings`

Needs pip, gcc and binutils (nm, readelf); --pycuda also needs the CUDA toolkit headers
(/usr/local/cuda) and a C++ compiler, and takes about 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BINDINGS = {
    "10": "tensorrt-cu12-bindings==10.16.1.11",
    "11": "tensorrt-cu13-bindings==11.4.0.106",
}
PYCUDA = "pycuda==2026.1"
SYSTEM_LIBS = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1")


def run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def undefined_symbols(so: Path) -> list[str]:
    """Undefined, unversioned, strong dynamic symbols: what the missing libraries provide
    (glibc/libstdc++ symbols carry versions, Python's start with Py)."""
    out = run(["nm", "-D", "--undefined-only", str(so)])
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1] and not re.match(r"_?Py", parts[1]):
            syms.append(parts[1])
    return sorted(set(syms) - system_symbols())


def system_symbols() -> set[str]:
    names: set[str] = set()
    for lib in SYSTEM_LIBS:
        path = next((p for p in (Path("/lib/x86_64-linux-gnu") / lib, Path("/usr/lib/x86_64-linux-gnu") / lib,
                                 Path("/lib64") / lib) if p.exists()), None)
        if path is not None:
            names.update(line.split()[-1].split("@")[0]
                         for line in run(["nm", "-D", "--defined-only", str(path)]).splitlines() if line.strip())
    return names


def needed(so: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", str(so)]))


def build_stub_library(out: Path, soname: str, symbols: list[str]) -> None:
    """A shared library named `soname` defining each symbol as a function returning 0."""
    out.mkdir(parents=True, exist_ok=True)
    src = out / (soname + ".c")
    src.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in symbols))
    run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out / soname), str(src)])


def owner(soname: str, symbol: str) -> bool:
    """Which TensorRT library a symbol belongs in (for realism; any split would load)."""
    if "OnnxParser" in symbol:
        return soname.startswith("libnvonnxparser")
    if "LibNvInferPlugins" in symbol:
        return soname.startswith("libnvinfer_plugin")
    return soname.startswith("libnvinfer.")


def prepare_trt(cache: Path, major: str) -> Path:
    target = cache / f"trt{major}"
    so = target / "tensorrt_bindings" / "tensorrt.so"
    if not so.exists():
        run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), BINDINGS[major]])
    symbols = undefined_symbols(so)
    libdir = target / "standin"
    for soname in needed(so):
        if soname.startswith("libnv"):
            build_stub_library(libdir, soname, [s for s in symbols if owner(soname, s)])
    return target


def prepare_pycuda(cache: Path) -> Path:
    """Build pycuda against a link-time libcuda stand-in (linked with --no-as-needed so the
    module records NEEDED libcuda.so.1, as a real build does), then generate a libcuda.so.1
    stand-in defining the driver symbols the module uses."""
    target = cache / "pycuda"
    if not list(target.glob("pycuda/_driver*.so")):
        cuda_root = Path(os.environ.get("CUDA_ROOT", "/usr/local/cuda"))
        if not (cuda_root / "include" / "cuda.h").exists():
            raise SystemExit(f"{cuda_root}/include/cuda.h missing: pycuda needs the CUDA toolkit headers")
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            build_stub_library(tmp / "linkstub", "libcuda.so.1", [])
            (tmp / "linkstub" / "libcuda.so").symlink_to("libcuda.so.1")
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
                 "-d", str(tmp), PYCUDA])
            (sdist,) = tmp.glob("pycuda-*.tar.gz")
            with tarfile.open(sdist) as tf:
                tf.extractall(tmp, filter="data")
            (src,) = [p for p in tmp.glob("pycuda-*") if p.is_dir()]
            run([sys.executable, "configure.py", f"--cuda-root={cuda_root}", "--no-cuda-enable-curand",
                 f"--cudadrv-lib-dir={tmp / 'linkstub'}"], cwd=src)
            # LDFLAGS reach the link line before -lcuda (configure's --ldflags come after it).
            run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(tmp / "wheel"), str(src)], env={**os.environ, "LDFLAGS": "-Wl,--no-as-needed"})
            (wheel,) = (tmp / "wheel").glob("pycuda-*.whl")
            run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)])
    (so,) = target.glob("pycuda/_driver*.so")
    build_stub_library(target / "standin", "libcuda.so.1", [s for s in undefined_symbols(so) if s.startswith("cu")])
    return target


def env_for(target: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(target), "LD_LIBRARY_PATH": str(target / "standin")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache"), help="where the bindings go (default: .cache)")
    ap.add_argument("--pycuda", action="store_true", help="also build pycuda against a stand-in libcuda")
    ap.add_argument("--print-env", choices=[*BINDINGS, "pycuda"], help="print the environment as JSON and exit")
    args = ap.parse_args()
    cache = args.cache.resolve()
    if args.print_env:
        print(json.dumps(env_for(cache / ("pycuda" if args.print_env == "pycuda" else f"trt{args.print_env}"))))
        return 0
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install gcc and binutils")
    for major in BINDINGS:
        target = prepare_trt(cache, major)
        print(f"TensorRT {major}: {target} (stand-ins in {target / 'standin'})")
    if args.pycuda:
        target = prepare_pycuda(cache)
        print(f"pycuda: {target} (stand-in libcuda in {target / 'standin'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
