"""Helpers shared by the benchmark scripts in this folder.

Starting and always stopping server subprocesses, waiting until they answer, machine info,
percentiles, plain-text and Markdown tables, and writing result files. Nothing here measures
anything by itself.

Every child process started through :class:`Child` is registered; it is stopped when its
``with`` block ends, and whatever is still alive is killed at interpreter exit (normal exit,
an exception, Ctrl-C, or SIGTERM/SIGHUP, which :func:`install_signal_handlers` turns into
``SystemExit``). On Linux the children also get ``PR_SET_PDEATHSIG`` so that they die with us
even if we are killed with SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable
# The console script installed next to the interpreter (the venv's bin/).
SMALLFIRST_BIN = str(Path(sys.executable).with_name("smallfirst"))

LADDER_DEFAULT = (
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)
STORY_PROMPT = "Write a long story about a lighthouse keeper."


# --------------------------------------------------------------------------- processes

_LIVE: set[Child] = set()


def _pdeathsig() -> None:
    """Run in the child before exec: die with SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A subprocess that is stopped (SIGTERM, then SIGKILL) when the block ends, always.

    The child runs in its own session, so Ctrl-C in the terminal reaches only us and we
    stop it in order. Its stdout and stderr go to ``log_path`` (never to an undrained pipe)
    unless ``capture_stdout`` is set, in which case stdout is a pipe read by
    :meth:`communicate`.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture_stdout: bool = False,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(os.environ if env is None else env)
        self.capture_stdout = capture_stdout
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"bench-{_slug(name)}-", suffix=".log")
            os.close(fd)
            log_path = Path(tmp)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else log,
                stderr=log,
                env=self.env,
                cwd=REPO_DIR,
                start_new_session=True,
                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
            )
        finally:
            log.close()
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def communicate(self, timeout: float) -> str:
        """Wait for a ``capture_stdout`` child to exit; its stdout (raises on failure)."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        return out.decode("utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process (all its threads) has used so far."""
        return process_cpu_seconds(self.pid)

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self.proc
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # its own session: the group is just it (and kids)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait_ready(self, url: str, timeout_s: float = 120.0) -> None:
        """Poll ``url`` until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited during startup:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.05)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)[:40]


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (0.0 where /proc is not available)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_LIVE):
        child.stop(grace_s=3.0)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise SystemExit so that every ``finally`` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="smallfirst-bench-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- smallfirst


def model_path(name: str) -> Path:
    """The GGUF file of catalog model ``name``; exits with a hint when it is not pulled."""
    from smallfirst.catalog import Catalog, UnknownModelError
    from smallfirst.settings import Settings

    catalog = Catalog(Settings())
    try:
        spec = catalog.get(name)
    except UnknownModelError as exc:
        raise SystemExit(f"bench: {exc}") from None
    path = catalog.file_path(spec)
    if path is None or not catalog.is_installed(spec):
        raise SystemExit(f"bench: {name} is not installed; run `smallfirst models pull {name}`")
    return path


def write_gateway_config(
    path: Path, settings: Mapping[str, Any], models: Sequence[Mapping[str, Any]] = ()
) -> Path:
    """A TOML config file for ``smallfirst serve --config`` (flat values only)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string

    lines = [f"{k} = {value(v)}" for k, v in settings.items()]
    for model in models:
        lines += ["", "[[models]]", *(f"{k} = {value(v)}" for k, v in model.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_command(
    *, port: int, default_model: str, threads: int | None = None, config: Path | None = None
) -> list[str]:
    cmd = [
        SMALLFIRST_BIN,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--default-model",
        default_model,
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    rank = (len(data) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def machine_info() -> dict[str, Any]:
    """Where and how this run happened; goes into every result file."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": str(Path.cwd()),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "mem_total_gib": _mem_total_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama_cpp_python"),
        "smallfirst": _version("smallfirst"),
        "git_commit": _git_commit(),
        "packages": {d: _version(d) for d in ("fastapi", "uvicorn", "httpx", "openai")},
    }


# --------------------------------------------------------------------------- output


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(out)


def write_results(
    name: str,
    result: dict[str, Any],
    *,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    notes: Sequence[str] = (),
    quick: bool = False,
    out_dir: Path = RESULTS_DIR,
) -> tuple[Path, Path]:
    """Write ``<name>-<timestamp>[-quick].json`` and the matching ``.md``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{name}-{stamp}" + ("-quick" if quick else "")
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    m = result.get("machine", {})
    md = [
        f"# {title}",
        "",
        f"- date: {m.get('date')}",
        f"- machine: {m.get('cpu_model')}, {m.get('cpu_cores')} cores "
        f"({m.get('cpu_cores_usable')} usable), {m.get('mem_total_gib')} GiB; "
        f"load average at start {m.get('load_average_at_start')}",
        f"- llama-cpp-python {m.get('llama_cpp_python')}, smallfirst {m.get('smallfirst')} "
        f"({m.get('git_commit')}), Python {m.get('python')}",
        f"- command: `{m.get('command')}`" + (" (quick mode)" if quick else ""),
        "",
        markdown_table(headers, rows),
        "",
        *[f"- {n}" for n in notes],
        "",
        f"Raw data: `{json_path.name}`",
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path


def print_header(title: str, machine: Mapping[str, Any]) -> None:
    print(f"== {title}")
    print(
        f"   {machine['cpu_model']}, {machine['cpu_cores']} cores, load average "
        f"{machine['load_average_at_start']}, llama-cpp-python {machine['llama_cpp_python']}"
    )
    print(f"   {machine['command']}", flush=True)


# --------------------------------------------------------------------------- streaming


def decode_rate(tokens: int, first: float | None, last: float | None) -> float:
    """Decode tokens/s between the first and the last token: (tokens - 1) / (last - first).

    The first token's time belongs to prompt processing (time to first token), so the
    interval from first to last token holds ``tokens - 1`` decode steps.
    """
    if first is None or last is None or tokens < 2 or last <= first:
        return math.nan
    return (tokens - 1) / (last - first)


@dataclass
class StreamStats:
    """One streamed completion as the client saw it (times are ``time.perf_counter()``)."""

    start: float
    end: float
    first: float | None = None  # first chunk with content
    last: float | None = None  # last chunk with content
    chunks: int = 0  # chunks with content
    usage_tokens: int | None = None  # completion_tokens from the usage chunk, if sent
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    text: str = ""

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks

    @property
    def ttft_s(self) -> float:
        return self.first - self.start if self.first is not None else math.nan

    @property
    def decode_tps(self) -> float:
        return decode_rate(self.tokens, self.first, self.last)

    def summary(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_count_source": "usage" if self.usage_tokens is not None else "chunks",
            "content_chunks": self.chunks,
            "prompt_tokens": self.prompt_tokens,
            "finish_reason": self.finish_reason,
            "ttft_ms": round(self.ttft_s * 1000, 3),
            "decode_s": None
            if self.first is None or self.last is None
            else round(self.last - self.first, 4),
            "decode_tps": round(self.decode_tps, 3),
            "total_s": round(self.end - self.start, 4),
        }


def openai_client(base_url: str, timeout_s: float = 600.0) -> httpx.Client:
    """A keep-alive HTTP client for an OpenAI-compatible ``base_url`` (ending in /v1).

    Plain httpx reading SSE lines, not the ``openai`` package: its per-chunk pydantic
    parsing costs the client CPU that, on a 2-core machine, is taken from the server being
    measured. The same client is used for every server compared.
    """
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        timeout=timeout_s,
        headers={"authorization": "Bearer unused"},
    )


def stream_chat(
    client: httpx.Client,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    *,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
) -> StreamStats:
    """Send one streaming chat completion (temperature 0) and time its content chunks."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(extra_body or {})
    parts: list[str] = []
    stats = StreamStats(start=time.perf_counter(), end=math.nan)
    with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read()[:300]!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            choices = chunk.get("choices") or []
            if choices:
                choice = choices[0]
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    if stats.first is None:
                        stats.first = now
                    stats.last = now
                    stats.chunks += 1
                    parts.append(content)
                if choice.get("finish_reason"):
                    stats.finish_reason = choice["finish_reason"]
            usage = chunk.get("usage")
            if usage:
                stats.usage_tokens = usage["completion_tokens"]
                stats.prompt_tokens = usage["prompt_tokens"]
    stats.end = time.perf_counter()
    stats.text = "".join(parts)
    return stats
