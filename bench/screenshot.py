"""Screenshot a running gateway's dashboard into a PNG, with Playwright and Debian's Chromium.

    python bench/screenshot.py --url http://127.0.0.1:8000 --out docs/dashboard.png [--period 1d]

The gateway must already be running (with real traffic, for the docs). The browser is the
system one (``apt-get install chromium``), driven by the ``playwright`` package; Playwright's
own browser download is never used. The page is captured once its first refresh has drawn
the data; requests that would leave the gateway's origin are refused, so the picture shows
exactly what an offline page shows.

This script measures nothing and starts no gateway.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from harness.procs import install_signal_handlers
from smallfirst.testing import CHROMIUM, CHROMIUM_ARGS

log = logging.getLogger("screenshot")


def screenshot(
    url: str,
    out: Path,
    *,
    period: str = "1d",
    width: int = 1400,
    height: int = 900,
    full_page: bool = True,
    executable: str = CHROMIUM,
    timeout_s: float = 30.0,
) -> Path:
    """Open ``url``'s dashboard for ``period`` (1h, 1d, all) and save a PNG at ``out``."""
    from playwright.sync_api import Route, sync_playwright

    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))

    def same_origin_only(route: Route) -> None:
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            log.warning("refused a request off the gateway: %s", route.request.url)
            route.abort()

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", same_origin_only)
            page.goto(f"{origin}/dashboard#period={period}", timeout=timeout_s * 1000)
            # the first refresh has rendered when the page counts one
            page.wait_for_selector("body[data-refreshes]", timeout=timeout_s * 1000)
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            browser.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running gateway")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--period", choices=["1h", "1d", "all"], default="1d")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--viewport-only", action="store_true", help="not the full page")
    parser.add_argument("--chromium", default=CHROMIUM, help="the browser executable")
    args = parser.parse_args(argv)
    install_signal_handlers()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = screenshot(
        args.url,
        args.out,
        period=args.period,
        width=args.width,
        height=args.height,
        full_page=not args.viewport_only,
        executable=args.chromium,
    )
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
