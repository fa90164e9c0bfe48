"""The one settings model of smallfirst, and how it is loaded.

Every knob lives here. Values come, from weakest to strongest, from the defaults below, a TOML
config file (``--config`` or ``SMALLFIRST_CONFIG``), environment variables prefixed
``SMALLFIRST_`` and command-line flags. The config file's top-level keys are fields of
:class:`Settings`; its ``[[models]]`` tables declare user models (local GGUF files or remote
OpenAI-compatible endpoints), validated by :class:`UserModel`.

This module does not look at the catalog's files or open anything: it only parses.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smallfirst.errors import ConfigError

Tier = Literal["XS", "S", "M", "L", "XL", "base", "remote"]


def default_data_dir() -> Path:
    """Where models and state live unless told otherwise (XDG data home)."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "smallfirst"


class UserModel(BaseModel):
    """A model declared in the config file: a local GGUF path or a remote endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:/-]+$")
    tier: Tier = "L"
    path: Path | None = None
    base_url: str | None = None
    model_id: str | None = None
    api_key_env: str | None = None
    context_length: int = Field(default=4096, gt=0)
    chat: bool = True
    # serves /v1/embeddings (a local GGUF only: embeddings run in-process)
    embeds: bool = False
    # calls functions (``tools``). A local GGUF: its chat template must have a tools section
    # and write Hermes-style <tool_call> blocks (Qwen2.5's does). Default: a remote model
    # yes (the request is passed on; the upstream decides), a local one no.
    tools: bool | None = None
    price_input_per_mtok_usd: float | None = Field(default=None, ge=0)
    price_output_per_mtok_usd: float | None = Field(default=None, ge=0)
    parameters: str | None = None
    license: str | None = None
    # models tried in this order when this one fails before its first byte
    fallbacks: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> UserModel:
        if (self.path is None) == (self.base_url is None):
            raise ValueError(f"model {self.name!r}: give exactly one of 'path' or 'base_url'")
        if self.embeds and self.base_url is not None:
            raise ValueError(f"model {self.name!r}: only a local model ('path') can embed")
        return self


class PriceConfig(BaseModel):
    """A hosted model's list price, overriding or adding to the built-in reference prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok_usd: float = Field(ge=0)
    output_per_mtok_usd: float = Field(ge=0)
    as_of: str = "configured"


class ProfileConfig(BaseModel):
    """Joules per token for a model, set by the operator (wins over measured profiles)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    j_per_input_token: float = Field(ge=0)
    j_per_output_token: float = Field(ge=0)
    source: str = "configured by the operator"


class Settings(BaseSettings):
    """Everything the gateway, the CLI and the engines can be told."""

    model_config = SettingsConfigDict(env_prefix="SMALLFIRST_", extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    models_dir: Path | None = Field(
        default=None, description="pulled model files (default: <data_dir>/models)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    default_model: str = "qwen2.5-coder-0.5b-instruct"
    default_router: bool = Field(
        default=True,
        description="route 'auto' with the router shipped in the package until one is fitted "
        "locally (smallfirst router fit); False: 'auto' means default_model until then",
    )
    n_threads: int | None = Field(
        default=None, ge=1, description="llama.cpp threads; None means every CPU core"
    )
    n_ctx: int = Field(default=4096, ge=256, description="context window, capped by the model's")
    n_batch: int = Field(default=512, ge=1)
    flash_attention: bool = Field(
        default=True,
        description="llama.cpp's flash attention in the in-process engines (as llama-server's "
        "default on CPUs): less CPU per token on small models, the same accuracy "
        "(bench/flash_attention*.py); off: llama-cpp-python's own default",
    )
    openmp_spin_count: int = Field(
        default=300_000,
        ge=0,
        description="how long llama.cpp's OpenMP threads spin at a barrier before they sleep "
        "(GOMP_SPINCOUNT; the environment's, if set, wins). The default is libgomp's own: "
        "the fastest on free cores; adaptive_threads keeps it from taking cores other work "
        "needs. 1000: the short spin of earlier versions",
    )
    adaptive_threads: bool = Field(
        default=True,
        description="the in-process engines decode with fewer threads while other processes "
        "keep this machine's cores busy (read from /proc/stat once a second; never more than "
        "n_threads); off: always n_threads, which with the long spin slows decoding several "
        "times over beside busy processes",
    )
    memory_budget_mb: int = Field(
        default=4096, ge=1, description="loaded in-process models are evicted (LRU) past this"
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    remote_timeout_s: float = Field(default=600.0, gt=0)
    remote_connect_timeout_s: float = Field(default=10.0, gt=0)
    models: tuple[UserModel, ...] = ()
    log_level: str = "info"

    # Overload control and graceful shutdown.
    max_queue: int = Field(
        default=16, ge=0, description="requests waiting per model; past it, an immediate 429"
    )
    queue_timeout_s: float = Field(
        default=60.0, gt=0, description="longest a request waits in its model's queue (then 429)"
    )
    remote_max_in_flight: int = Field(
        default=32, ge=1, description="requests open at once to one remote model's upstream"
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, how long in-flight requests may finish"
    )

    # Metering: energy, carbon, cost, and the reference model for savings.
    receipts: bool = Field(default=True, description="meter every request and store its receipt")
    country: str | None = Field(
        default=None, description="ISO-3 code for grid carbon intensity; None = world average"
    )
    pue: float = Field(default=1.0, ge=1.0, description="power usage effectiveness")
    electricity_usd_per_kwh: float = Field(default=0.15, ge=0)
    hardware_usd_per_hour: float = Field(default=0.0, ge=0)
    watts_per_thread: float | None = Field(
        default=None, gt=0, description="override the CPU power table for the estimate"
    )
    hardware_counters: bool = Field(
        default=True, description="use RAPL/NVML counters when readable"
    )
    reference_model: str | None = Field(
        default="qwen2.5-coder-1.5b-instruct",
        description="what savings are measured against: a catalog model or a priced hosted one",
    )
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    store_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    # Resilience: fallbacks, remote retries, cooldown of failing models (issue #17).
    fallbacks: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="model -> models tried in order when it fails before its first byte "
        "(for built-in models; user models may also say it in their [[models]] table)",
    )
    remote_retries: int = Field(
        default=2, ge=0, description="retries of a remote 429, 5xx or refused connection"
    )
    remote_retry_budget_s: float = Field(
        default=10.0, ge=0, description="the most time one request spends waiting to retry"
    )
    remote_retry_backoff_s: float = Field(
        default=0.5, gt=0, description="first backoff; doubles per retry, with jitter"
    )
    cooldown_failures: int = Field(
        default=3, ge=1, description="failures within cooldown_window_s that cool a model down"
    )
    cooldown_window_s: float = Field(default=60.0, gt=0)
    # short, as LiteLLM's: a model without fallbacks answers 503 while it cools down
    cooldown_s: float = Field(
        default=5.0, ge=0, description="how long a failing model is skipped before a probe"
    )

    # Access: API keys, budgets, rate limits (issue #15; docs/access.md).
    allow_anonymous: bool = Field(
        default=False,
        description="serve a non-loopback host with no API key defined (open to anyone)",
    )
    access_energy_margin: float = Field(
        default=2.0,
        ge=1.0,
        description="a local model's worst-case energy for budgets: its per-token profile "
        "times this (its receipts measure energy, which may exceed the profile)",
    )
    access_reservation_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="a budget reservation not settled within this long (a gateway killed "
        "mid-request) is given back; keep it above the longest request",
    )

    # Batched in-process engine: continuous batching and prefix reuse (issue #14).
    engine_batching: bool = Field(
        default=True,
        description="serve local models with the batched engine (one context, `parallel` "
        "sequences decoded together, prompt prefixes reused); off: one generation at a time",
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="sequences one local model decodes at once"
    )
    prefill_chunk_tokens: int = Field(
        default=128,
        ge=1,
        description="prompt tokens a joining request evaluates per step, so running "
        "streams keep flowing while it reads its prompt",
    )
    prefix_reuse: bool = Field(
        default=True,
        description="a request reuses the KV a finished request left in a slot for their "
        "common prompt prefix; off: every prompt is read in full (for timing isolation)",
    )

    # Response cache (issue #14): deterministic requests (greedy or seeded) asked again are
    # answered from memory; bounded by entries, bytes and age (LRU).
    response_cache: bool = Field(
        default=True, description="answer a repeated greedy or seeded request from memory"
    )
    response_cache_max_entries: int = Field(default=1024, ge=1)
    response_cache_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=4096, description="estimated size of the kept answers"
    )
    response_cache_ttl_s: float = Field(
        default=3600.0, gt=0, description="how long an answer is reused"
    )

    # Embeddings (issue #16): /v1/embeddings, served in-process in llama.cpp's embedding
    # mode (mean pooling, L2-normalised) by the catalog's models that embed.
    embedding_model: str = Field(
        default="smollm2-135m-instruct",
        description="the model that embeds for 'auto' (chosen by bench/embedding_similarity.py)",
    )
    embedding_max_inputs: int = Field(
        default=2048, ge=1, description="inputs one embeddings request may carry (OpenAI's cap)"
    )
    # small: an embedding context keeps an output row per token of its batch, vocabulary-wide
    # (Qwen2.5-1.5B at 4096 tokens: 4.3 GB resident after one 2,000-token input)
    embedding_n_ctx: int = Field(
        default=512,
        ge=16,
        description="tokens one embedding input may have (the embedding context, capped by "
        "the model's); a longer input is a 400",
    )

    # Function calling (issue #16): tools on in-process models.
    tool_call_grammar: bool = Field(
        default=True,
        description="hold a call the model starts under tool_choice 'auto' to the function's "
        "parameter schema (a lazy grammar); off: the call is parsed as written",
    )

    # The store's database (issue #18): SQLite in the data directory, or PostgreSQL.
    database_url: str | None = Field(
        default=None,
        description="where receipts, keys, budgets and evaluation results live: unset, the "
        "SQLite file smallfirst.db in data_dir; sqlite:PATH another SQLite file; "
        "postgresql://USER:PASSWORD@HOST:PORT/DB a PostgreSQL database shared by replicas",
    )

    # Carbon-aware batches (issue #19; docs/carbon-aware-batches.md): the hourly signals the
    # planner reads (smallfirst.scheduling.signal), what it minimises, and its margin.
    carbon_signal: str = Field(
        default="constant",
        description="grid carbon per hour: constant[:G_PER_KWH] (batches run at once), "
        "file:PATH or file:embedded (a trace CSV), electricitymaps:ZONE, watttime:REGION, "
        "uk or uk:REGIONID (forecast APIs)",
    )
    price_signal: str | None = Field(
        default=None,
        description="electricity price per hour: constant[:USD_PER_KWH] or file:PATH "
        "(a CSV with a usd_per_kwh column); needed by the cost objectives",
    )
    schedule_objective: Literal["carbon", "cost", "carbon_cost_cap"] = Field(
        default="carbon", description="what the planner minimises over a batch's window"
    )
    schedule_cost_cap_usd: float | None = Field(
        default=None, ge=0, description="a batch's electricity cost cap (carbon_cost_cap)"
    )
    schedule_margin_s: float = Field(
        default=1800.0, ge=0, description="planned work ends this long before the deadline"
    )
    signal_clock_offset: str = Field(
        default="auto",
        description="how a file: trace maps onto today: auto (same day of year and hour, "
        "the trace looped yearly), none, or N d / N h subtracted from now",
    )
    signal_timeout_s: float = Field(default=10.0, gt=0, description="one forecast API call")
    signal_cache_s: float = Field(
        default=900.0, ge=0, description="how long a zone's last forecast is reused"
    )
    electricitymaps_url: str = "https://api.electricitymap.org"
    electricitymaps_token_env: str = "ELECTRICITYMAPS_TOKEN"
    watttime_url: str = "https://api.watttime.org"
    watttime_username_env: str = "WATTTIME_USERNAME"
    watttime_password_env: str = "WATTTIME_PASSWORD"
    uk_carbon_intensity_url: str = "https://api.carbonintensity.org.uk"

    # Files and Batch API (issue #19; docs/carbon-aware-batches.md): uploads live in
    # data_dir/files; a background runner answers batch lines through the serving step, in
    # spare capacity.
    files_max_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="the largest file POST /v1/files takes"
    )
    batch_max_lines: int = Field(
        default=50_000, ge=1, description="requests one batch input file may hold (OpenAI's cap)"
    )
    batch_runner: bool = Field(
        default=True, description="run batches in this gateway (off: a replica that only serves)"
    )
    batch_tick_s: float = Field(
        default=1.0, gt=0, description="how often the runner looks for batch work"
    )
    batch_line_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="a line whose gateway stopped renewing its claim (renewed every tick) "
        "for this long is run again: how soon a batch resumes after a gateway dies",
    )
    batch_max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="batch lines one gateway runs at once (default: parallel - 1, at least 1); "
        "none start while live requests wait for a model",
    )
    # the batched engine's throughput, for a batch's planned duration (planning only: the
    # lines' receipts carry what they measured)
    batch_input_tokens_per_s: float = Field(default=500.0, gt=0)
    batch_output_tokens_per_s: float = Field(default=50.0, gt=0)

    def fallbacks_for(self, model: str) -> tuple[str, ...]:
        """The models to try after ``model``: its [[models]] list, then the table's, once each."""
        declared = next((m.fallbacks for m in self.models if m.name == model), ())
        ordered = [*declared, *self.fallbacks.get(model, ())]
        return tuple(n for i, n in enumerate(ordered) if n != model and n not in ordered[:i])

    @property
    def models_path(self) -> Path:
        """Where pulled GGUF files live: ``models_dir``, else ``data_dir``/models."""
        return self.models_dir or self.data_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "smallfirst.db"

    @property
    def database(self) -> str | Path:
        """The store's database: ``database_url``, else the SQLite file in ``data_dir``."""
        return self.database_url or self.db_path

    @property
    def threads(self) -> int:
        # affinity, not os.cpu_count(): containers and taskset limit the cores we may use
        return self.n_threads or len(os.sched_getaffinity(0)) or 1


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML config file; a missing file or bad TOML is a ConfigError naming the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults < config file < environment < ``overrides``.

    ``overrides`` whose value is None are ignored, so CLI flags that were not given do not
    mask the file or the environment. Invalid values, wherever they came from, are a
    :class:`~smallfirst.errors.ConfigError` carrying pydantic's message.
    """
    if config_file is None and os.environ.get("SMALLFIRST_CONFIG"):
        config_file = Path(os.environ["SMALLFIRST_CONFIG"])
    values: dict[str, Any] = read_config_file(config_file) if config_file else {}
    try:
        # Settings() with no arguments reads only the environment; the fields it set win
        # over the file.
        env_only = Settings()
        values.update({k: getattr(env_only, k) for k in env_only.model_fields_set})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
