"""What three forecast APIs are asked and how their answers become hourly g CO2e/kWh.

- Electricity Maps: ``GET /v3/carbon-intensity/forecast?zone=ZONE`` with the ``auth-token``
  header; ``{"zone", "forecast": [{"carbonIntensity", "datetime"}, ...]}``, hourly,
  lifecycle average intensity in g CO2e/kWh.
- WattTime v3: ``GET /login`` with HTTP basic auth gives ``{"token"}``; then
  ``GET /v3/forecast?region=REGION&signal_type=co2_moer`` with ``Authorization: Bearer``;
  ``{"data": [{"point_time", "value"}, ...], "meta": {"units": "lbs_co2_per_mwh"}}`` in
  5-minute points. Its signal is the *marginal* operating emissions rate (MOER), not an
  average intensity: the values are converted (1 lb/MWh = 0.45359237 g/kWh) and the
  signal's name says ``moer``.
- Carbon Intensity API (Great Britain, no key): ``GET /intensity/{from}/fw24h`` or
  ``GET /regional/intensity/{from}/fw24h/regionid/{id}``; half-hour periods
  ``{"from", "to", "intensity": {"forecast", ...}}``.

Sub-hourly points are averaged into their hour. A point without a value is left out (never
0). Anything else is a :class:`~smallfirst.errors.SignalError` saying what was wrong. This
module only speaks the formats; the timeouts and the cache are :mod:`.forecasts`'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx

from smallfirst.errors import SignalError
from smallfirst.scheduling.hourly import HourValue, floor_hour, utc

__all__ = [
    "LBS_PER_MWH_IN_G_PER_KWH",
    "electricitymaps",
    "hourly_means",
    "uk_carbon_intensity",
    "watttime",
]

LBS_PER_MWH_IN_G_PER_KWH = 0.45359237  # 453.59237 g per lb, 1,000 kWh per MWh


def hourly_means(points: Iterable[tuple[datetime, float]]) -> list[HourValue]:
    """Points averaged into the hour they fall in, ascending."""
    sums: dict[datetime, list[float]] = defaultdict(list)
    for moment, value in points:
        sums[floor_hour(moment)].append(value)
    return [HourValue(h, sum(v) / len(v)) for h, v in sorted(sums.items())]


def electricitymaps(client: httpx.Client, zone: str, token: str) -> list[HourValue]:
    body = _json(
        client.get(
            "/v3/carbon-intensity/forecast", params={"zone": zone}, headers={"auth-token": token}
        )
    )
    rows = _list(body, "forecast")
    return hourly_means(_points(rows, "datetime", lambda r: r.get("carbonIntensity")))


def watttime(client: httpx.Client, region: str, username: str, password: str) -> list[HourValue]:
    login = _json(client.get("/login", auth=(username, password)))
    token = login.get("token") if isinstance(login, dict) else None
    if not isinstance(token, str) or not token:
        raise SignalError("WattTime's /login answered without a token")
    body = _json(
        client.get(
            "/v3/forecast",
            params={"region": region, "signal_type": "co2_moer"},
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    units = (body.get("meta") or {}).get("units") if isinstance(body, dict) else None
    if units != "lbs_co2_per_mwh":
        raise SignalError(f"WattTime's forecast is in {units!r}, expected 'lbs_co2_per_mwh'")
    rows = _list(body, "data")

    def grams(row: dict[str, Any]) -> Any:
        value = row.get("value")
        return value * LBS_PER_MWH_IN_G_PER_KWH if isinstance(value, int | float) else value

    return hourly_means(_points(rows, "point_time", grams))


def uk_carbon_intensity(
    client: httpx.Client, now: datetime, region_id: str | None
) -> list[HourValue]:
    start = floor_hour(now).strftime("%Y-%m-%dT%H:%MZ")
    if region_id:
        body = _json(client.get(f"/regional/intensity/{start}/fw24h/regionid/{region_id}"))
        region = body.get("data") if isinstance(body, dict) else None
        # the regional answer wraps its periods in a region object (a list of one, or not)
        if isinstance(region, list) and region:
            region = region[0]
        rows = _list(region, "data")
    else:
        rows = _list(_json(client.get(f"/intensity/{start}/fw24h")), "data")

    def forecast(row: dict[str, Any]) -> Any:
        intensity = row.get("intensity")
        return intensity.get("forecast") if isinstance(intensity, dict) else None

    return hourly_means(_points(rows, "from", forecast))


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise SignalError(
            f"{response.request.url.path} answered {response.status_code}: "
            f"{response.text[:200].strip()}"
        )
    try:
        return response.json()
    except ValueError:
        raise SignalError(f"{response.request.url.path} answered something not JSON") from None


def _list(body: Any, key: str) -> list[dict[str, Any]]:
    rows = body.get(key) if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SignalError(f"the answer has no list of objects under {key!r}")
    return rows


def _points(rows: list[dict[str, Any]], time_key: str, value: Any) -> list[tuple[datetime, float]]:
    """(time, value) per row; a row whose value is null is a missing point, left out."""
    out = []
    for row in rows:
        v = value(row)
        if v is None:
            continue
        stamp = row.get(time_key)
        try:
            moment = utc(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")))
        except ValueError:
            raise SignalError(f"a forecast point has no valid {time_key!r}: {stamp!r}") from None
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise SignalError(f"a forecast point at {stamp} has no valid value: {v!r}")
        out.append((moment, float(v)))
    return out
