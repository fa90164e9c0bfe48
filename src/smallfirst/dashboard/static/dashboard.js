// The smallfirst dashboard: fetches aggregates from the gateway that served this page (same
// origin, nothing else) and draws them as inline SVG. Hand-written, no dependencies, no build.
//
// Refreshing: one refresh (four requests) at a time. The next is scheduled only when the previous one has
// finished, so a slow gateway is never sent a pile of requests; changing the period aborts
// the refresh in flight and starts a new one; a hidden tab does not fetch.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const TIMEOUT_MS = 15000;
  const LATEST_ROWS = 20;
  const BATCH_ROWS = 10;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#d53f8c", "#319795",
    "#b7791f", "#4a5568", "#c53030", "#3182ce"];
  const TIER_ORDER = ["XS", "S", "M", "L", "XL", "base", "remote"];
  const PERIOD_TEXT = { "1h": "in the last hour", "1d": "in the last day", all: "yet" };

  const state = {
    period: periodFromHash(),
    meta: null,
    timer: 0,
    inflight: null, // the AbortController of the refresh in flight
    colours: new Map(), // model -> colour, stable for the page's lifetime
    refreshes: 0,
  };

  // ------------------------------------------------------------------ small helpers

  function periodFromHash() {
    const m = /period=(1h|1d|all)/.exec(location.hash);
    return m ? m[1] : "1d";
  }

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    return node;
  }

  // Children are appended as nodes or text, never parsed as HTML: model names and route
  // policies come from clients.
  function el(tag, attrs = {}, ...children) {
    const node = setAttrs(document.createElement(tag), attrs);
    node.append(...children);
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
    node.append(...children);
    return node;
  }

  function colour(model) {
    if (!state.colours.has(model)) {
      state.colours.set(model, PALETTE[state.colours.size % PALETTE.length]);
    }
    return state.colours.get(model);
  }

  // ------------------------------------------------------------------ number formats

  function num(x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "–";
    const a = Math.abs(x);
    if (a === 0) return "0";
    if (a >= 1000) return Math.round(x).toLocaleString("en-US");
    if (a >= 1) return Number(x.toPrecision(3)).toLocaleString("en-US", { maximumFractionDigits: 2 });
    if (a >= 1e-3) return String(Number(x.toPrecision(2)));
    return x.toExponential(1); // "4.4e-6" reads better than "0.0000044"
  }
  const int = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));
  const wh = (j) => (j === null || j === undefined ? "–" : `${num(j / 3600)} Wh`);
  const joules = (j) => (j === null || j === undefined ? "–" : `${num(j)} J`);
  const grams = (g) => (g === null || g === undefined ? "–" : `${num(g)} g`);
  const usd = (d) => (d === null || d === undefined ? "–" : `$${num(d)}`);
  const pct = (p) => (p === null || p === undefined ? "–" : `${num(p)}%`);
  const pad = (n) => String(n).padStart(2, "0");

  function clock(unixS, withDate) {
    const d = new Date(unixS * 1000);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return withDate ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
  }

  function when(unixS) {
    const d = new Date(unixS * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? `${clock(unixS, false)}:${pad(d.getSeconds())}` : `${d.getFullYear()}-${clock(unixS, true)}`;
  }

  function duration(s) {
    if (s % 86400 === 0) return `${s / 86400} d`;
    if (s % 3600 === 0) return `${s / 3600} h`;
    if (s % 60 === 0) return `${s / 60} min`;
    return `${s} s`;
  }

  // "measured", "estimated", "profile" or "mixed" for a summary's known energy.
  function energyMethod(t) {
    const parts = [["measured", t.energy_measured_j], ["estimated", t.energy_estimated_j],
      ["profile", t.energy_profile_j]].filter(([, j]) => j > 0).map(([m]) => m);
    if (parts.length === 0) return t.energy_unknown > 0 ? "unknown" : "";
    return parts.length === 1 ? parts[0] : "mixed";
  }

  function methodBadge(node, method) {
    node.textContent = method;
    node.dataset.method = method;
    node.hidden = !method;
  }

  // ------------------------------------------------------------------ fetching

  // Once the gateway has API keys, its data needs an admin key (docs/access.md). The page
  // asks for one on the first 401 and keeps it for this browser tab only (sessionStorage).
  const KEY_ITEM = "smallfirst.apiKey";
  let askingForKey = false;

  function askForKey(message) {
    if (askingForKey) return;
    askingForKey = true;
    try {
      const key = window.prompt(`${message}\n\nThis gateway needs an admin API key:`);
      if (key && key.trim()) {
        sessionStorage.setItem(KEY_ITEM, key.trim());
        state.retryNow = true; // try the new key at once, not at the next tick
      } else {
        sessionStorage.removeItem(KEY_ITEM);
      }
    } finally {
      askingForKey = false;
    }
  }

  async function getJSON(path, params, signal) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined) query.set(k, v);
    }
    const qs = query.toString();
    const headers = { accept: "application/json" };
    const key = sessionStorage.getItem(KEY_ITEM);
    if (key) headers.authorization = `Bearer ${key}`;
    const response = await fetch(qs ? `${path}?${qs}` : path, {
      signal, headers, cache: "no-store",
    });
    const body = await response.json();
    const message = body.error ? body.error.message : response.statusText;
    if (response.status === 401) askForKey(message);
    if (!response.ok) throw new Error(message);
    return body;
  }

  async function refresh() {
    if (state.inflight) state.inflight.abort();
    clearTimeout(state.timer);
    const ctl = new AbortController();
    state.inflight = ctl;
    const timeout = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    const period = state.period;
    const since = period === "all" ? null : period;
    const signal = ctl.signal;
    try {
      if (!state.meta) state.meta = await getJSON("/smallfirst/v1/dashboard/meta", {}, signal);
      const [summary, series, frontier, latest, batches] = await Promise.all([
        getJSON("/smallfirst/v1/summary", { since, by: "key" }, signal),
        getJSON("/smallfirst/v1/dashboard/timeseries", { since }, signal),
        getJSON("/smallfirst/v1/dashboard/frontier", {}, signal),
        getJSON("/smallfirst/v1/receipts", { since, limit: LATEST_ROWS }, signal),
        getJSON("/v1/batches", { limit: BATCH_ROWS }, signal),
      ]);
      if (state.inflight !== ctl) return; // superseded while parsing
      render(period, summary, series, frontier, latest);
      renderBatches(batches.data);
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      setStatus(`updated ${when(Date.now() / 1000)} · every ${REFRESH_MS / 1000} s`, false);
    } catch (err) {
      if (state.inflight !== ctl) return; // aborted by a newer refresh: not an error
      const why = signal.aborted ? "the gateway did not answer in time" : err.message;
      setStatus(`could not refresh: ${why}; retrying`, true);
    } finally {
      clearTimeout(timeout);
      if (state.inflight === ctl) {
        state.inflight = null;
        state.timer = setTimeout(tick, state.retryNow ? 0 : REFRESH_MS);
        state.retryNow = false;
      }
    }
  }

  function tick() {
    if (document.hidden) {
      state.timer = setTimeout(tick, REFRESH_MS);
      return;
    }
    refresh();
  }

  function setStatus(text, error) {
    const node = $("#status");
    node.textContent = text;
    node.classList.toggle("error", error);
  }

  // ------------------------------------------------------------------ rendering

  function render(period, summary, series, frontier, latest) {
    // colours by model name order, so a model keeps its colour whatever the period shows first
    const names = new Set([...summary.models.map((m) => m.model), ...frontier.models.map((m) => m.model)]);
    for (const name of Array.from(names).sort()) colour(name);
    const empty = summary.total.requests === 0;
    $("#empty-traffic").hidden = !empty;
    $("#empty-period").textContent = PERIOD_TEXT[period];
    renderHeadline(period, summary);
    renderSeries($("#chart-requests"), series, (p) => p.requests, int, "requests");
    renderSeries($("#chart-energy"), series, (p) => p.energy_j / 3600, (v) => `${num(v)} Wh`, "Wh");
    methodBadge($("[data-method-for=energy]"), energyMethod(summary.total));
    renderTiers($("#chart-tiers"), tierTraffic(summary.models));
    renderFrontier($("#chart-frontier"), frontier);
    renderLatest(latest.data);
    renderKeys(summary.keys || []);
  }

  // One row per API key; hidden while no request in the period was made with a key.
  function renderKeys(rows) {
    const body = $("#keys tbody");
    body.replaceChildren();
    $("#by-key").hidden = !rows.some((r) => r.key_id);
    for (const r of rows) {
      body.append(el("tr", { "data-key-id": r.key_id || "" },
        el("td", { title: r.key_id || "requests made without a key" }, r.key_name || "(no key)"),
        el("td", { class: "num" }, int(r.requests)),
        el("td", { class: "num" }, `${int(r.prompt_tokens)} / ${int(r.completion_tokens)}`),
        el("td", { class: "num" }, joules(r.energy_j)),
        el("td", { class: "num" }, usd(r.cost_usd)),
        el("td", { class: "num" }, grams(r.co2_g)),
      ));
    }
  }

  function setField(name, value, text) {
    for (const node of $$(`[data-summary="${name}"]`)) {
      // the raw value, exactly as the API sent it (JSON numbers round-trip exactly)
      node.dataset.value = JSON.stringify(value === undefined ? null : value);
      node.textContent = text;
    }
  }

  function renderHeadline(period, summary) {
    const t = summary.total;
    const head = $("#headline");
    head.dataset.period = period;
    head.dataset.since = JSON.stringify(summary.since);
    head.dataset.until = JSON.stringify(summary.until);
    setField("requests", t.requests, int(t.requests));
    setField("ok", t.ok, int(t.ok));
    setField("prompt_tokens", t.prompt_tokens, int(t.prompt_tokens));
    setField("completion_tokens", t.completion_tokens, int(t.completion_tokens));
    $("#tokens-total").textContent = int(t.prompt_tokens + t.completion_tokens);
    for (const key of ["energy_j", "energy_measured_j", "energy_estimated_j", "energy_profile_j",
      "baseline_energy_j", "saved_energy_j"]) {
      setField(key, t[key], wh(t[key]));
    }
    setField("energy_unknown", t.energy_unknown, int(t.energy_unknown));
    // loading weights is overhead, not any request's: shown beside the requests' energy
    const o = (summary.overhead && summary.overhead.total) || { count: 0, energy_j: 0 };
    for (const node of $$("[data-overhead]")) {
      const key = node.dataset.overhead;
      node.dataset.value = JSON.stringify(o[key]);
      node.textContent = key === "count" ? int(o[key]) : wh(o[key]);
    }
    setField("co2_g", t.co2_g, grams(t.co2_g));
    setField("saved_co2_g", t.saved_co2_g, grams(t.saved_co2_g));
    setField("cost_usd", t.cost_usd, usd(t.cost_usd));
    setField("saved_cost_usd", t.saved_cost_usd, usd(t.saved_cost_usd));
    setField("saved_energy_pct", t.saved_energy_pct, pct(t.saved_energy_pct));
    setField("saved_cost_pct", t.saved_cost_pct, pct(t.saved_cost_pct));
    $("#saved-co2-pct").textContent = pct(t.baseline_co2_g ? (100 * t.saved_co2_g) / t.baseline_co2_g : null);
    const method = energyMethod(t);
    methodBadge($("#energy-method"), method);
    methodBadge($("#co2-method"), method);
    $("#reference-model").textContent = (state.meta && state.meta.reference_model) || "the reference model";
    $("#version").textContent = state.meta ? `smallfirst ${state.meta.version}` : "";
  }

  function niceMax(x) {
    if (!(x > 0)) return 1;
    const step = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= x) return m * step;
    return 10 * step;
  }

  function nodata(figure, none) {
    $(".nodata", figure).hidden = !none;
    $("svg", figure).style.display = none ? "none" : "";
  }

  // Stacked bars: one bar per time bucket, one segment per model.
  function renderSeries(figure, ts, valueOf, format, unit) {
    const chart = $("svg", figure);
    const legend = $(".legend", figure);
    chart.replaceChildren();
    legend.replaceChildren();
    for (const node of $$("[data-bucket]", figure)) node.textContent = `per ${duration(ts.bucket_s)}`;
    nodata(figure, ts.data.length === 0);
    if (ts.data.length === 0) return;

    const b = ts.bucket_s;
    const first = Math.floor(ts.start / b) * b;
    const last = Math.max(first, Math.floor(ts.end / b) * b);
    const buckets = new Map();
    for (let t = first; t <= last; t += b) buckets.set(t, new Map());
    for (const p of ts.data) {
      if (!buckets.has(p.t)) buckets.set(p.t, new Map()); // a clock ahead of ours
      buckets.get(p.t).set(p.model, p);
    }
    const times = Array.from(buckets.keys()).sort((x, y) => x - y);
    const totals = times.map((t) => Array.from(buckets.get(t).values()).reduce((s, p) => s + valueOf(p), 0));
    const yMax = niceMax(Math.max(...totals));

    const W = 640, H = 220, L = 56, R = 8, T = 10, B = 24;
    const plotW = W - L - R, plotH = H - T - B;
    const slot = plotW / times.length;
    const barW = Math.max(1, slot * 0.8);
    const y = (v) => T + plotH - (v / yMax) * plotH;

    for (const frac of [0, 0.5, 1]) {
      const v = yMax * frac;
      chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      chart.append(svg("text", { class: "tick", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
    }
    const withDate = last - first > 86400;
    const labelEvery = Math.max(1, Math.ceil(times.length / 6));
    times.forEach((t, i) => {
      const x0 = L + i * slot + (slot - barW) / 2;
      let acc = 0;
      for (const model of ts.models) {
        const p = buckets.get(t).get(model);
        const v = p ? valueOf(p) : 0;
        if (!(v > 0)) continue;
        const h = (v / yMax) * plotH;
        chart.append(svg("rect", {
          class: "point", x: x0, y: y(acc) - h, width: barW, height: h, fill: colour(model),
          "data-model": model, "data-t": t, "data-value": v,
        }, svg("title", {}, `${clock(t, withDate)} · ${model}: ${format(v)}${unit === "Wh" ? "" : ` ${unit}`}`)));
        acc += v;
      }
      if (i % labelEvery === 0) {
        chart.append(svg("text", { class: "tick", x: x0 + barW / 2, y: H - 6, "text-anchor": "middle" }, clock(t, withDate)));
      }
    });
    chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
    for (const model of ts.models) {
      legend.append(el("li", {}, el("span", { class: "swatch", style: `background:${colour(model)}` }), model));
    }
  }

  function tierRank(tier) {
    const i = TIER_ORDER.indexOf(tier);
    return i < 0 ? TIER_ORDER.length : i;
  }

  // The summary's per-(model, tier) rows, added up per tier: a handful of rows, already
  // aggregated by the database.
  function tierTraffic(models) {
    const byTier = new Map();
    let total = 0;
    for (const m of models) {
      const t = byTier.get(m.tier) || { tier: m.tier, requests: 0, tokens: 0, energy_j: 0 };
      t.requests += m.requests;
      t.tokens += m.prompt_tokens + m.completion_tokens;
      t.energy_j += m.energy_j;
      byTier.set(m.tier, t);
      total += m.requests;
    }
    return Array.from(byTier.values(), (t) => ({ ...t, share: t.requests / total }));
  }

  // One horizontal bar per tier, its length the tier's share of requests.
  function renderTiers(figure, tiers) {
    const chart = $("svg", figure);
    chart.replaceChildren();
    nodata(figure, tiers.length === 0);
    if (tiers.length === 0) return;
    const rows = tiers.slice().sort((a, b) => tierRank(a.tier) - tierRank(b.tier) || a.tier.localeCompare(b.tier));
    const W = 640, L = 64, R = 210, rowH = 26;
    const H = rows.length * rowH + 8;
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    rows.forEach((r, i) => {
      const yTop = 4 + i * rowH;
      const w = Math.max(1, r.share * (W - L - R));
      chart.append(svg("text", { class: "label", x: L - 8, y: yTop + 16, "text-anchor": "end" }, r.tier));
      chart.append(svg("rect", { class: "track", x: L, y: yTop + 3, width: W - L - R, height: rowH - 8, rx: 3 }));
      chart.append(svg("rect", {
        class: "point tier", x: L, y: yTop + 3, width: w, height: rowH - 8, rx: 3,
        "data-tier": r.tier, "data-requests": r.requests, "data-share": r.share,
      }, svg("title", {}, `${r.tier}: ${int(r.requests)} requests, ${int(r.tokens)} tokens, ${wh(r.energy_j)}`)));
      chart.append(svg("text", { class: "value", x: W - R + 8, y: yTop + 16 },
        `${num(100 * r.share)}% · ${int(r.requests)} req · ${wh(r.energy_j)}`));
    });
  }

  // Each evaluated model a point: accuracy against joules per item on a log scale, with the
  // Pareto frontier (nothing both cheaper and more accurate exists) joined by a line.
  function renderFrontier(figure, fr) {
    const chart = $("svg", figure);
    chart.replaceChildren();
    const placed = fr.models.filter((m) => m.energy_j_per_item !== null && m.energy_j_per_item > 0);
    const unplaced = fr.models.filter((m) => !placed.includes(m)).map((m) => m.model);
    $("#empty-evals").hidden = fr.models.length > 0;
    chart.style.display = placed.length ? "" : "none";
    const note = $("#frontier-note");
    note.textContent = fr.models.length
      ? `${int(fr.results)} results on ${fr.benchmarks.join(", ")}; energy ` +
        `${Array.from(new Set(placed.map((m) => m.energy_method))).join(", ") || "unknown"}` +
        (unplaced.length ? `; not plotted (energy unknown): ${unplaced.join(", ")}` : "")
      : "";
    if (!placed.length) return;

    const W = 640, H = 260, L = 48, R = 24, T = 12, B = 34;
    const energies = placed.map((m) => m.energy_j_per_item);
    let lo = Math.log10(Math.min(...energies)), hi = Math.log10(Math.max(...energies));
    const padding = Math.max(0.15, (hi - lo) * 0.12);
    lo -= padding;
    hi += padding;
    const x = (e) => L + ((Math.log10(e) - lo) / (hi - lo)) * (W - L - R);
    const y = (acc) => T + (1 - acc) * (H - T - B);

    for (const acc of [0, 0.25, 0.5, 0.75, 1]) {
      chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(acc), y2: y(acc) }));
      chart.append(svg("text", { class: "tick", x: L - 6, y: y(acc) + 4, "text-anchor": "end" }, `${acc * 100}%`));
    }
    for (const e of logTicks(lo, hi)) {
      chart.append(svg("line", { class: "grid", x1: x(e), x2: x(e), y1: T, y2: H - B }));
      chart.append(svg("text", { class: "tick", x: x(e), y: H - B + 14, "text-anchor": "middle" }, `${num(e)} J`));
    }
    chart.append(svg("text", { class: "tick", x: W - R, y: H - 4, "text-anchor": "end" }, "energy per item, J (log scale)"));

    const front = placed.filter((m) => m.on_frontier).sort((a, b) => a.energy_j_per_item - b.energy_j_per_item);
    if (front.length > 1) {
      chart.append(svg("polyline", {
        class: "frontier",
        points: front.map((m) => `${x(m.energy_j_per_item)},${y(m.accuracy)}`).join(" "),
      }));
    }
    drawRouterCurve(chart, fr.router, x, y);
    const labels = []; // [x0, x1, y] of the labels drawn so far, to move one off another
    for (const m of placed.slice().sort((a, b) => a.energy_j_per_item - b.energy_j_per_item)) {
      const cx = x(m.energy_j_per_item), cy = y(m.accuracy);
      chart.append(svg("circle", {
        class: m.on_frontier ? "point on-frontier" : "point", cx, cy, r: 6, fill: colour(m.model),
        "data-model": m.model, "data-accuracy": m.accuracy, "data-energy-j": m.energy_j_per_item,
      }, svg("title", {}, `${m.model}: ${num(100 * m.accuracy)}% over ${int(m.n)} items, ` +
        `${num(m.energy_j_per_item)} J/item (${m.energy_method})`)));
      const right = cx < W - 180;
      const width = 6.6 * m.model.length; // about 12px text; exact metrics are not worth a layout pass
      const x0 = right ? cx + 9 : cx - 9 - width;
      const clash = (ly) => labels.some(([a, b, y0]) => a < x0 + width && x0 < b && Math.abs(y0 - ly) < 16);
      const ly = [cy - 8, cy + 18, cy - 22, cy + 32].find((v) => !clash(v)) ?? cy - 8;
      labels.push([x0, x0 + width, ly]);
      chart.append(svg("text", { class: "label", x: cx + (right ? 9 : -9), y: ly, "text-anchor": right ? "start" : "end" }, m.model));
    }
  }

  // Ticks at powers of ten, or at 1-2-5 steps when the range spans less than two decades.
  function logTicks(lo, hi) {
    const ticks = [];
    const steps = hi - lo < 2 ? [1, 2, 5] : [1];
    for (let p = Math.floor(lo); p <= Math.ceil(hi); p += 1) {
      for (const m of steps) {
        const e = m * 10 ** p;
        if (Math.log10(e) >= lo && Math.log10(e) <= hi) ticks.push(e);
      }
    }
    return ticks;
  }

  // HOOK (router curve): where the router's own accuracy-vs-energy curve is drawn, from
  // evaluation results stored under `auto` / `auto:<policy>` (see dashboard/api.py is_router).
  // No router evaluation exists yet, so `points` is empty and nothing is drawn.
  function drawRouterCurve(chart, points, x, y) {
    const placed = (points || []).filter((p) => p.energy_j_per_item > 0)
      .sort((a, b) => a.energy_j_per_item - b.energy_j_per_item);
    if (!placed.length) return;
    chart.append(svg("polyline", {
      class: "router", points: placed.map((p) => `${x(p.energy_j_per_item)},${y(p.accuracy)}`).join(" "),
    }));
    for (const p of placed) {
      chart.append(svg("rect", {
        class: "point router", x: x(p.energy_j_per_item) - 5, y: y(p.accuracy) - 5, width: 10, height: 10,
        "data-model": p.model, "data-accuracy": p.accuracy, "data-energy-j": p.energy_j_per_item,
      }, svg("title", {}, `${p.model} (router): ${num(100 * p.accuracy)}%`)));
    }
  }

  function renderLatest(receipts) {
    const body = $("#latest tbody");
    body.replaceChildren();
    $("#latest-empty").hidden = receipts.length > 0;
    $("#latest").hidden = receipts.length === 0;
    for (const r of receipts) {
      const energy = r.energy.energy_j;
      const base = r.baseline.energy_j;
      const saved = r.savings.energy_j;
      const model = el("td", {}, el("span", { class: "swatch", style: `background:${colour(r.model)}` }), r.model);
      if (r.status !== "ok") model.append(" ", el("span", { class: "badge error" }, r.status));
      body.append(el("tr", { "data-receipt-id": r.receipt_id },
        el("td", { title: new Date(r.created_at * 1000).toISOString() }, when(r.created_at)),
        model,
        el("td", {}, r.tier),
        el("td", { class: "num" }, `${int(r.tokens.prompt)} / ${int(r.tokens.completion)}`),
        el("td", { class: "num" }, joules(energy), " ",
          el("span", { class: "method", "data-method": r.energy.method, title: r.energy.note || r.energy.source || "" }, r.energy.method)),
        el("td", { class: "num" }, usd(r.cost.cost_usd)),
        el("td", { class: "num" }, grams(r.carbon.co2_g)),
        el("td", { class: "num", title: r.baseline.model ? `vs ${r.baseline.model}` : "" },
          saved === null ? "–" : `${joules(saved)}${base ? ` (${num((100 * saved) / base)}%)` : ""}`),
        el("td", { class: "route" }, r.policy === null || r.policy === undefined ? "-" : r.policy),
      ));
    }
  }

  // The latest batches (every key's, to an admin key): progress, when they run, and gCO2 as
  // run against the same energy at submission and in the window's worst hours.
  function renderBatches(batches) {
    const body = $("#batches tbody");
    body.replaceChildren();
    $("#batches-empty").hidden = batches.length > 0;
    $("#batches").hidden = batches.length === 0;
    for (const b of batches) {
      const sf = b.smallfirst || {};
      const plan = sf.plan || {};
      const hours = (plan.hours || []).map((h) => clock(Date.parse(h) / 1000, true));
      const runs = plan.reason === undefined ? "–" : plan.at_once ? "at once" : hours.join(", ");
      const counts = b.request_counts;
      body.append(el("tr", { "data-batch-id": b.id },
        el("td", { title: new Date(b.created_at * 1000).toISOString() }, when(b.created_at)),
        el("td", {}, b.id),
        el("td", {}, b.status),
        el("td", { class: "num" }, `${int(counts.completed + counts.failed)} / ${int(counts.total)}`),
        el("td", { title: plan.reason || "" }, runs),
        el("td", { class: "num" }, grams(sf.co2_g_as_run)),
        el("td", { class: "num" }, grams(sf.co2_g_at_submission)),
        el("td", { class: "num" }, grams(sf.co2_g_worst_hours)),
      ));
    }
  }

  // ------------------------------------------------------------------ wiring

  function examples() {
    const origin = location.origin;
    $("#curl-example").textContent =
      `curl ${origin}/v1/chat/completions -H 'content-type: application/json' \\\n` +
      `  -d '{"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]}'`;
    $("#python-example").textContent =
      "from openai import OpenAI\n" +
      `client = OpenAI(base_url="${origin}/v1", api_key="unused")\n` +
      'r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])\n' +
      "print(r.model, r.choices[0].message.content)";
  }

  function choosePeriod(period) {
    state.period = period;
    for (const b of $$("#period button")) b.setAttribute("aria-pressed", String(b.dataset.period === period));
    history.replaceState(null, "", `#period=${period}`);
    refresh();
  }

  function start() {
    examples();
    for (const b of $$("#period button")) b.addEventListener("click", () => choosePeriod(b.dataset.period));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !state.inflight) refresh();
    });
    choosePeriod(state.period);
  }

  start();
})();
