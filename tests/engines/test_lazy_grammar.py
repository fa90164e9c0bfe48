"""The lazy tool-call grammar against the texts the Qwen-Coder models write, on a real
vocabulary: every reply below is accepted token by token as llama.cpp replays and then
follows it. A grammar that refused a replayed piece would not fail a request but abort the
whole gateway (llama.cpp throws a C++ exception through the C API), which is what a
pretty-printed call in a code fence did before the grammar allowed its whitespace; so each
case runs in a child process, and the test reads its exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smallfirst.catalog import Catalog
from smallfirst.settings import Settings
from tests.conftest import QWEN, require_models

ACCEPT = r"""
import ctypes, json, sys
import llama_cpp
from smallfirst.engines.openmp import tame_openmp
from smallfirst.engines.base import Tools
from smallfirst.engines.toolcalls import TRIGGERS, tool_grammar

tame_openmp()
path, reply = sys.argv[1], sys.argv[2]
parameters = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
function = {"name": "get_weather", "parameters": parameters}
tools = Tools(json.dumps([{"type": "function", "function": function}]))
llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
patterns = (ctypes.c_char_p * len(TRIGGERS))(*(t.encode() for t in TRIGGERS))
sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
    vocab, tool_grammar(tools, bare=True).encode(), b"root", patterns, len(TRIGGERS), None, 0
)
assert sampler
for token in llm.tokenize(reply.encode(), add_bos=False, special=True):
    llama_cpp.llama_sampler_accept(sampler, token)
print("accepted")
"""

CALL = '"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "celsius"}'
PRETTY = (
    '{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Lisbon",\n'
    '    "unit": "celsius"\n  }\n}'
)
REPLIES = {
    "tagged": f"<tool_call>\n{{{CALL}}}\n</tool_call>",
    "tagged, no newlines": f"<tool_call>{{{CALL}}}</tool_call>",
    "two tagged": f"<tool_call>\n{{{CALL}}}\n</tool_call>\n<tool_call>\n{{{CALL}}}\n</tool_call>",
    "bare": f"{{{CALL}}}",
    "doubled braces": f"{{{{{CALL}}}}}",
    "fenced": f"```json\n{{{CALL}}}\n```",
    "fenced, pretty-printed": f"```json\n{PRETTY}\n```",
    "pretty-printed": PRETTY,
    "text, then a tag": f"Let me look.\n<tool_call>\n{{{CALL}}}\n</tool_call>",
}


@pytest.mark.parametrize("reply", list(REPLIES.values()), ids=list(REPLIES))
def test_the_lazy_grammar_takes_what_the_models_write(settings: Settings, reply: str) -> None:
    require_models(settings, QWEN)
    catalog = Catalog(settings)
    path = str(catalog.file_path(catalog.get(QWEN)))
    done = subprocess.run(
        [sys.executable, "-c", ACCEPT, path, reply], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "accepted" in done.stdout, done.stderr[-600:]
