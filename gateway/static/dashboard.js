// Scout staff dashboard: one snapshot a second from /dashboard/stream (SSE), no reload.
"use strict";
const $ = (id) => document.getElementById(id);
const pct = (x) => (x == null ? "–" : `${Math.round(x * 100)}%`);
const ms = (x) => (x == null ? "–" : `${Math.round(x)} ms`);
const usd = (x) => `$${(x || 0).toFixed(x >= 100 ? 0 : x >= 1 || !x ? 2 : 4)}`;
const ago = (t) => {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  Object.assign(e, attrs);
  if (text) e.textContent = text;
  return e;
};

// "r1 34% (hit 81%) · r2 33% …": how turns spread over the replicas, and each one's share
// of the prompt read from its prefix cache (where the replica reports it).
function spread(share, hit) {
  const names = Object.keys(share || {});
  if (!names.length) return "–";
  return names.map((n) => `${n} ${pct(share[n])}` +
                          (hit && n in hit ? ` (hit ${pct(hit[n])})` : "")).join(" · ");
}

function tiles(t, meta) {
  const items = [
    ["requests / min", t.requests_per_min ?? "–"],
    [`${meta.primary_label} availability`, pct(t.availability)],
    ["TTFT p50", ms(t.ttft_p50_ms)],
    ["TTFT p95", ms(t.ttft_p95_ms)],
    ["fallback rate (5 min)", pct(t.fallback_rate)],
    ["cache hit rate", pct(t.cache_hit_rate)],
    ["prefix cache hit rate", pct(t.prefix_hit_rate)],
    ["turns per replica", spread(t.replica_turn_share, t.replica_prefix_hit_rate)],
    ["active sessions", t.active_sessions],
    ["spend today", usd(t.spend_today_usd)],
    [`saved vs all-${meta.reference_label}`, usd(t.saved_today_usd)],
    [`hedge ${meta.primary_label} after`, ms((t.hedge_after_ms || {})[meta.primary])],
    ["hedge budget used", pct(t.hedge_budget_used)],
  ];
  $("tiles").replaceChildren(...items.map(([k, v]) => {
    const d = el("div", { className: "tile" });
    d.dataset.tile = k;
    d.append(el("div", { className: "v" }, String(v)), el("div", { className: "k" }, k));
    return d;
  }));
}

function targets(snap) {
  const rows = [];
  for (const [tier, h] of Object.entries(snap.tiers)) {
    rows.push({ name: `tier ${tier}`, state: h.state, reason: h.reason });
  }
  for (const t of snap.targets) rows.push(t);
  rows.push({ name: `store (${snap.store.backend})`, state: snap.store.state, reason: snap.store.reason });
  $("targets").replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    tr.dataset.target = r.name;
    tr.dataset.state = r.state;
    if (["down", "misconfigured"].includes(r.state)) tr.className = "bad";
    tr.append(el("td", {}, r.name), el("td", { className: `state s-${r.state}` }, r.state),
              el("td", { className: "reason" }, r.reason || ""),
              el("td", {}, r.latency_ms == null ? "" : ms(r.latency_ms)),
              el("td", {}, r.since ? ago(r.since) : ""));
    return tr;
  }));
}

let plot = null;
function chart(s, meta) {
  // Stacked answers per minute: each series is drawn as the running sum of the tiers before it.
  // The tiers, their labels and colours come from the gateway's tier registry.
  const tiers = meta.series.map((m) => m.name);
  const colors = Object.fromEntries(meta.series.map((m) => [m.name, m.color]));
  const labels = Object.fromEntries(meta.series.map((m) => [m.name, m.label]));
  const stacked = [];
  let acc = s.t.map(() => 0);
  for (const tier of tiers) {
    acc = acc.map((v, i) => v + (s[tier][i] || 0));
    stacked.push(acc.slice());
  }
  // uPlot paints in series order: the tallest (the total) first, each lower tier over it.
  const order = tiers.map((_, i) => tiers.length - 1 - i);
  const data = [s.t, ...order.map((i) => stacked[i]), s.ttft_p95_ms.map((v) => v)];
  const width = Math.min(1150, $("chart").clientWidth || 600);
  if (plot && plot.series.length !== tiers.length + 2) { plot.destroy(); plot = null; }
  if (!plot) {
    plot = new uPlot({
      width, height: 240,
      scales: { x: { time: true }, n: {}, ms: {} },
      axes: [{ stroke: "#8b98a5", grid: { stroke: "#2d3b48" } },
             { scale: "n", stroke: "#8b98a5", grid: { stroke: "#2d3b48" }, label: "answers/min" },
             { scale: "ms", side: 1, stroke: "#8b98a5", grid: { show: false }, label: "p95 ms" }],
      series: [{}, ...order.map((i) => tiers[i]).map((t) => ({ label: labels[t], scale: "n", stroke: colors[t], fill: colors[t] + "99", width: 1 })),
               { label: "TTFT p95", scale: "ms", stroke: "#e6edf3", width: 2, dash: [4, 3] }],
    }, data, $("chart"));
  } else {
    plot.setData(data);
  }
}

function incidents(list) {
  list = list.filter((i) => !(i.from === "unknown" && ["up", "busy"].includes(i.to)));
  if (!list.length) return;
  $("incidents").replaceChildren(...list.map((i) => {
    const who = i.kind === "target" ? i.target.replace(/^[^.]+\./, "") : i.tier;
    const text = i.text ?? `${who}: ${i.from} → ${i.to} — ${i.reason}`;
    const li = el("li", {}, `${new Date(i.at * 1000).toLocaleTimeString()} · ${text}`);
    li.dataset.kind = i.kind;
    return li;
  }));
}

function privacy(p) {
  const sent = Object.entries(p.offsite_turns || {});
  const kinds = Object.entries(p.redacted || {});
  if (!sent.length) { $("privacy").textContent = "nothing: every answer today came from on-site"; return; }
  const turns = sent.map(([intent, n]) => `${n} ${intent}`).join(", ");
  const values = kinds.length ? kinds.map(([k, n]) => `${n} ${k.toLowerCase()}`).join(", ") : "none";
  $("privacy").textContent = `turns sent off-site: ${turns} · personal values replaced before they left: ${values}`;
}

function render(snap) {
  $("overall").textContent = snap.status;
  $("overall").dataset.s = snap.status;
  $("alert").textContent = snap.fallback_alert ? `Fallback rate alert: most answers are not coming from ${snap.tier_meta.primary_label} — see incidents.` : "";
  $("alert").className = snap.fallback_alert ? "on" : "";
  tiles(snap.tiles, snap.tier_meta);
  targets(snap);
  chart(snap.series, snap.tier_meta);
  incidents(snap.incidents);
  privacy(snap.privacy || {});
  $("note").textContent = `${snap.currency_note} · updated ${new Date(snap.at * 1000).toLocaleTimeString()}`;
  document.body.dataset.updated = String(snap.at);
}

const feed = new EventSource("/dashboard/stream");
feed.onmessage = (ev) => render(JSON.parse(ev.data));
feed.onerror = () => { $("overall").textContent = "reconnecting…"; $("overall").dataset.s = "degraded"; };
