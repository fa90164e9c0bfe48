"""A loopback stand-in for the three forecast APIs, speaking their documented formats.

One FastAPI app answers Electricity Maps' ``/v3/carbon-intensity/forecast``, WattTime's
``/login`` and ``/v3/forecast``, and the Carbon Intensity API's ``/intensity/{from}/fw24h``
and ``/regional/...`` routes, from a table of hourly values starting at ``start``. It counts
the calls, checks the credentials, and can be told to answer slowly or with nonsense.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

TOKEN = "em-token"
USER, PASSWORD = "wt-user", "wt-pass"
BEARER = "wt-bearer"


@dataclass
class Stub:
    start: datetime
    values: list[float | None]  # g/kWh per hour from start; None: the API has no figure
    calls: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0
    nonsense: bool = False

    def count(self, route: str) -> None:
        self.calls[route] = self.calls.get(route, 0) + 1
        time.sleep(self.delay_s)

    def points(self, step: timedelta) -> list[tuple[datetime, float | None]]:
        per_hour = int(timedelta(hours=1) / step)
        return [
            (self.start + i * step, self.values[i // per_hour])
            for i in range(len(self.values) * per_hour)
        ]


def iso(moment: datetime, fmt: str = "%Y-%m-%dT%H:%M:%S.000Z") -> str:
    return moment.strftime(fmt)


def build(stub: Stub) -> FastAPI:
    app = FastAPI()

    @app.get("/v3/carbon-intensity/forecast")
    def electricitymaps(zone: str, request: Request) -> Response:
        stub.count("electricitymaps")
        if request.headers.get("auth-token") != TOKEN:
            return JSONResponse({"error": "bad token"}, status_code=401)
        if stub.nonsense:
            return PlainTextResponse("<html>maintenance</html>")
        forecast = [
            {"carbonIntensity": v, "datetime": iso(t)} for t, v in stub.points(timedelta(hours=1))
        ]
        return JSONResponse({"zone": zone, "forecast": forecast, "updatedAt": iso(stub.start)})

    @app.get("/login")
    def login(request: Request) -> Response:
        stub.count("login")
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "bad login"}, status_code=403)
        return JSONResponse({"token": BEARER})

    @app.get("/v3/forecast")
    def watttime(region: str, signal_type: str, request: Request) -> Response:
        stub.count("watttime")
        if request.headers.get("authorization") != f"Bearer {BEARER}":
            return JSONResponse({"error": "bad bearer"}, status_code=401)
        data: list[dict[str, Any]] = [
            # MOER in lbs/MWh: the stub's g/kWh table converted back
            {"point_time": iso(t, "%Y-%m-%dT%H:%M:%S+00:00"), "value": v / 0.45359237}
            for t, v in stub.points(timedelta(minutes=5))
            if v is not None
        ]
        meta = {
            "region": region,
            "signal_type": signal_type,
            "units": "lbs_co2_per_mwh",
            "data_point_period_seconds": 300,
            "generated_at": iso(stub.start),
        }
        return JSONResponse({"data": data, "meta": meta})

    def periods() -> list[dict[str, Any]]:
        return [
            {
                "from": iso(t, "%Y-%m-%dT%H:%MZ"),
                "to": iso(t + timedelta(minutes=30), "%Y-%m-%dT%H:%MZ"),
                "intensity": {"forecast": v, "actual": None, "index": "moderate"},
            }
            for t, v in stub.points(timedelta(minutes=30))
        ]

    @app.get("/intensity/{start}/fw24h")
    def uk(start: str) -> Response:
        stub.count("uk")
        return JSONResponse({"data": periods()})

    @app.get("/regional/intensity/{start}/fw24h/regionid/{region_id}")
    def uk_regional(start: str, region_id: int) -> Response:
        stub.count("uk-regional")
        region = {
            "regionid": region_id,
            "dnoregion": "UKPN London",
            "shortname": "London",
            "data": periods(),
        }
        return JSONResponse({"data": region})

    return app
