"""What an in-process model is asked: the prompt text its chat template writes, and its tokens.

Both in-process engines (one generation at a time, :mod:`.llama`; batched, :mod:`.batched`)
build prompts the same way, so that the two give the same tokens to the same model: chat
messages go through the model's own chat template from its GGUF metadata (plus a pre-filled
``assistant_prefix``; a request's ``tools`` too, when the template has a tools section), a
raw completion prompt is tokenized as is, starting from BOS when the
model wants one. Text going back out is handled by :mod:`.text`.

This module does not load models or run them; it wraps an already loaded llama.cpp model.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from smallfirst.catalog import ModelSpec
from smallfirst.engines.base import GenerationRequest
from smallfirst.errors import GenerationError, InvalidRequestError, UnsupportedError
from smallfirst.types import Message

__all__ = ["Prompter"]

# a function name no template writes unless it renders the tools it is given
_PROBE = "smallfirst_probe_function"


class Prompter:
    """Prompts and tokens for one loaded model (``model``: llama-cpp-python's LlamaModel)."""

    def __init__(self, spec: ModelSpec, model: Any, metadata: dict[str, str]) -> None:
        self.spec = spec
        self.model = model
        self.formatter: Any = None
        if spec.chat:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = metadata.get("tokenizer.chat_template")
            if not template:
                raise GenerationError(f"{spec.name} has no chat template in its GGUF")
            eos, bos = model.token_eos(), model.token_bos()
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
            )

    @functools.cached_property
    def calls_tools(self) -> bool:
        """Whether the chat template renders ``tools`` (judged by rendering a probe)."""
        if self.formatter is None:
            return False
        probe = [{"role": "user", "content": "hi"}]
        tool = {"type": "function", "function": {"name": _PROBE, "parameters": {}}}
        return _PROBE in self.formatter(messages=probe, tools=[tool]).prompt

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def prompt_tokens(self, request: GenerationRequest) -> tuple[str, list[int]]:
        """The prompt text the model sees, and its tokens (and a 400 for a ``logit_bias``
        token this model does not have)."""
        bias = request.sampling.logit_bias
        if bias and bias[-1][0] >= int(self.model.n_vocab()):  # ids ascending
            raise InvalidRequestError(
                f"logit_bias names token {bias[-1][0]}; {self.spec.name} has "
                f"{self.model.n_vocab()} tokens",
                param="logit_bias",
            )
        if request.messages is not None:
            if self.formatter is None:
                raise UnsupportedError(
                    f"{self.spec.name} is a base model without a chat template; "
                    "use /v1/completions",
                    param="model",
                )
            messages = [_template_message(m) for m in request.messages]
            tools = request.tools
            offered = None
            if tools is not None and tools.choice != "none":  # none: the model sees no tools
                if not self.calls_tools:
                    raise UnsupportedError(
                        f"{self.spec.name}'s chat template has no tools section", param="tools"
                    )
                offered = json.loads(tools.definitions)
            rendered = self.formatter(messages=messages, tools=offered).prompt
            prompt = rendered + (request.assistant_prefix or "")
            # The template already wrote BOS where the model wants one.
            return prompt, self.tokenize(prompt, add_bos=False, special=True)
        prompt = request.prompt or ""
        bos = int(self.model.token_bos())
        tokens = self.tokenize(prompt, add_bos=bool(self.model.add_bos_token()), special=False)
        if not tokens and bos != -1:
            # an empty prompt starts from BOS, as llama-cpp-python's own server does:
            # llama.cpp cannot sample with nothing evaluated (found by fuzzing)
            tokens = [bos]
        if not tokens:
            raise InvalidRequestError(
                "'prompt' is empty and this model has no BOS token", param="prompt"
            )
        return prompt, tokens


def _template_message(m: Message) -> dict[str, Any]:
    """A message as chat templates read it: a call's arguments as an object (the templates
    write them with ``tojson``), a tool's answer with the id of the call it answers."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _arguments(c.arguments)},
            }
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # as the client wrote it; the template shows it as a string
