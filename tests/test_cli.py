"""The command line's own logic: what the serve banner says ``auto`` does."""

from __future__ import annotations

import pytest

from smallfirst.cli import auto_banner, build_parser

pytestmark = pytest.mark.fast


def test_the_banner_names_the_default_model_only_without_a_router() -> None:
    none = auto_banner(None, "qwen2.5-coder-0.5b-instruct")
    assert "qwen2.5-coder-0.5b-instruct" in none and "router fit" in none
    packaged = auto_banner("package:default_router.json.gz", "qwen2.5-coder-0.5b-instruct")
    assert "packaged router" in packaged and "qwen2.5" not in packaged
    fitted = auto_banner("/data/routers/latest.json.gz", "qwen2.5-coder-0.5b-instruct")
    assert fitted == "routed by /data/routers/latest.json.gz"


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "9"],
        ["models", "pull", "--ladder"],
        ["eval", "run", "--limit", "3"],
        ["router", "fit"],
        ["usage", "--since", "1h"],
    ],
)
def test_every_command_group_parses(argv: list[str]) -> None:
    assert callable(build_parser().parse_args(argv).func)
