"""A live Triton Inference Server as a runner: parity and load tests against a deployment.

The model's inputs, outputs and batch limit come from the server itself (`/v2/models/NAME`
and `/v2/models/NAME/config`), so the feed is checked as for any runner before a request is
sent. tritonclient is imported when a runner starts, not before. Its HTTP client is built on
gevent, whose connections belong to the thread that made them: every thread gets its own
client (`Clients`), never a shared one.

An error the server returns (`InferenceServerException`) becomes a `ServerError` carrying the
server's own message, so a bad request reads as what the server said about it.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DeployError, ToolMissingError
from .base import Runner, TensorSpec

# Triton's datatype names (the HTTP/REST protocol) -> numpy; BYTES are encoded strings.
NUMPY_OF = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT8": np.int8, "INT16": np.int16,
            "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_, "BYTES": np.object_}
DEFAULT_TIMEOUT_S = 60.0


class ServerError(DeployError):
    """The server could not be reached, or refused a request (its message follows)."""


def import_http():
    try:
        import tritonclient.http as http
    except ImportError:
        raise ToolMissingError("talking to Triton needs tritonclient; `pip install 'tritonclient[http]'`") from None
    return http


def server_message(e: Exception) -> str:
    """The server's words for a failed call (tritonclient's exception, or a connection error)."""
    message = getattr(e, "message", None)
    text = (message() if callable(message) else str(e)) or type(e).__name__
    # tritonclient prefixes every message with the request id, unknown unless one was sent.
    return re.sub(r"^\[request id: [^]]*\] ", "", text.strip().splitlines()[0])


def host_port(url: str) -> str:
    """tritonclient takes `host:port`; a user may paste `http://host:port`."""
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            return url[len(scheme):].rstrip("/")
    return url.rstrip("/")


class Clients:
    """One tritonclient HTTP client per thread (gevent connections are per thread)."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url = host_port(url)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self):
        client = getattr(self._local, "client", None)
        if client is None:
            http = import_http()
            client = http.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                network_timeout=self.timeout_s)
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for c in clients:
            c.close()
        self._local = threading.local()


def call(what: str, fn, *args, **kwargs):
    """`fn(*args)`, with tritonclient's and the network's errors as one ServerError line."""
    try:
        return fn(*args, **kwargs)
    except DeployError:
        raise
    except Exception as e:  # tritonclient raises InferenceServerException; gevent, socket errors
        raise ServerError(f"{what}: {server_message(e)}") from None


class TritonRunner(Runner):
    """Model `model` of the server at `url`; `infer` sends one request per call."""

    def __init__(self, url: str, model: str, name: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url, self.model = url, model
        self.name = name or f"triton:{model}"
        self.clients = Clients(url, timeout_s)
        self.metadata: dict[str, Any] | None = None
        self.config: dict[str, Any] | None = None

    def activate(self) -> None:
        if self.metadata is not None:
            return
        client = self.clients.get()
        where = f"Triton at {self.clients.url}"
        if not call(where, client.is_server_live):
            raise ServerError(f"{where}: not live; start the server or check --triton")
        if not call(where, client.is_model_ready, self.model):
            raise ServerError(f"{where}: model {self.model!r} is not ready (not in the repository, or it failed "
                              "to load: see the server's log)")
        self.metadata = call(f"{where} model {self.model}", client.get_model_metadata, self.model)
        self.config = call(f"{where} model {self.model}", client.get_model_config, self.model)

    def close(self) -> None:
        self.clients.close()
        self.metadata = self.config = None

    @property
    def max_batch(self) -> int | None:  # type: ignore[override]
        self.activate()
        n = int(self.config.get("max_batch_size", 0))
        return n or None

    @property
    def parameters(self) -> dict[str, str]:
        self.activate()
        return {k: v.get("string_value", "") for k, v in (self.config.get("parameters") or {}).items()}

    def input_specs(self) -> list[TensorSpec]:
        self.activate()
        return [TensorSpec(t["name"], tuple(None if d < 0 else int(d) for d in t["shape"]),
                           np.dtype(NUMPY_OF[t["datatype"]])) for t in self.metadata["inputs"]]

    def output_names(self) -> list[str]:
        self.activate()
        return [t["name"] for t in self.metadata["outputs"]]

    def takes_bytes(self) -> bool:
        return any(s.dtype == np.object_ for s in self.input_specs())

    def request(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One inference request, unchecked (the server checks it; a load test sends what it is told)."""
        http = import_http()
        types = {t["name"]: t["datatype"] for t in self.metadata["inputs"]} if self.metadata else {}
        inputs = []
        for name, value in feed.items():
            item = http.InferInput(name, list(value.shape), types.get(name) or _datatype(value))
            item.set_data_from_numpy(value, binary_data=True)
            inputs.append(item)
        wanted = list(outputs or self.output_names())
        requested = [http.InferRequestedOutput(n, binary_data=True) for n in wanted]
        result = call(f"Triton model {self.model}", self.clients.get().infer, self.model, inputs, outputs=requested)
        return {n: result.as_numpy(n) for n in wanted}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.request(feed)

    def infer_images(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Encoded images through a model whose one input takes bytes, `[N, 1]` (the ensemble),
        in requests of at most its max_batch_size."""
        (spec,) = self.input_specs()
        return self.infer_any_batch({spec.name: np.array([[bytes(b)] for b in images], dtype=np.object_)})


def _datatype(value: np.ndarray) -> str:
    for name, dtype in NUMPY_OF.items():
        if value.dtype == dtype:
            return name
    return str(value.dtype).upper()
