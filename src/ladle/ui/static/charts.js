// Small SVG charts drawn by hand: distributions, scores over time, and the job timeline.
import { h, fmtTime, fmtDuration, fmtNum } from "./dom.js";

const S = (tag, attrs, ...kids) => h(`svg:${tag}`, attrs, ...kids);
const title = (text) => S("title", {}, text);

/** Baseline vs current distribution: grouped bars over bins (numeric edges or categories). */
export function distribution(bins, width = 520, height = 220) {
  // Numeric bins: the tooltip gives the range, the axis the lower edge (the outer bins are open-ended).
  const edges = bins.edges || [];
  const labels = bins.categories || edges.slice(0, -1).map((e, i) => `${fmtNum(e, 2)}–${fmtNum(edges[i + 1], 2)}`);
  const span = edges.length ? Math.abs(edges[edges.length - 1] - edges[0]) : 0;
  const dp = span >= 100 ? 0 : span >= 10 ? 1 : span >= 1 ? 2 : 3;
  const ticks = bins.categories || edges.slice(0, -1).map((e, i) => (i === 0 ? `<${(edges[1] ?? e).toFixed(dp)}` : e.toFixed(dp)));
  const base = bins.baseline || [];
  const cur = bins.current || [];
  const norm = (xs) => { const t = xs.reduce((a, b) => a + b, 0) || 1; return xs.map((x) => x / t); };
  const b = norm(base), c = norm(cur);
  const n = Math.max(b.length, c.length, 1);
  const pad = { l: 40, r: 10, t: 10, b: 44 };
  const w = width - pad.l - pad.r, hgt = height - pad.t - pad.b;
  const max = Math.max(...b, ...c, 0.01);
  const bw = w / n;
  const y = (v) => pad.t + hgt - (v / max) * hgt;
  const svg = S("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", "data-testid": "distribution", role: "img" });
  for (const f of [0, 0.5, 1]) {
    svg.append(S("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y(max * f), y2: y(max * f) }),
      S("text", { class: "muted-text", x: pad.l - 4, y: y(max * f) + 4, "text-anchor": "end" }, `${Math.round(max * f * 100)}%`));
  }
  for (let i = 0; i < n; i++) {
    const x = pad.l + i * bw;
    const gw = Math.max(1, bw / 2 - 2);
    svg.append(
      S("rect", { class: "bar-base", x: x + 1, y: y(b[i] || 0), width: gw, height: pad.t + hgt - y(b[i] || 0) },
        title(`baseline ${labels[i] ?? i}: ${((b[i] || 0) * 100).toFixed(1)}%`)),
      S("rect", { class: "bar-cur", x: x + 1 + gw, y: y(c[i] || 0), width: gw, height: pad.t + hgt - y(c[i] || 0) },
        title(`current ${labels[i] ?? i}: ${((c[i] || 0) * 100).toFixed(1)}%`)));
    const every = Math.ceil(n / (bins.categories ? 12 : 6));
    if (i % every === 0) {
      svg.append(S("text", { class: "muted-text", x: x + bw / 2, y: height - pad.b + 14, "text-anchor": "middle" },
        String(ticks[i] ?? i).slice(0, 14)));
    }
  }
  svg.append(S("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: pad.t + hgt, y2: pad.t + hgt }));
  const legend = S("g", { transform: `translate(${pad.l}, ${height - 14})` },
    S("rect", { class: "bar-base", width: 10, height: 10, y: -9 }), S("text", { x: 14, class: "muted-text" }, "baseline"),
    S("rect", { class: "bar-cur", width: 10, height: 10, x: 80, y: -9 }), S("text", { x: 94, class: "muted-text" }, "current"));
  svg.append(legend);
  return svg;
}

/** Scores over time: one line per metric key, a dashed threshold, breaches as red dots. */
export function series(points, keys, threshold = null, width = 520, height = 200) {
  const pad = { l: 44, r: 12, t: 12, b: 34 };
  const w = width - pad.l - pad.r, hgt = height - pad.t - pad.b;
  const svg = S("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", "data-testid": "series", role: "img" });
  const values = points.flatMap((p) => keys.map((k) => p[k]).filter((v) => typeof v === "number"));
  if (threshold !== null) values.push(threshold);
  const max = Math.max(...values, 0.01) * 1.1;
  const times = points.map((p) => Date.parse(p.at));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = (t) => pad.l + (t1 === t0 ? w / 2 : ((t - t0) / (t1 - t0)) * w);
  const y = (v) => pad.t + hgt - (v / max) * hgt;
  for (const f of [0, 0.5, 1]) {
    svg.append(S("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y(max * f), y2: y(max * f) }),
      S("text", { class: "muted-text", x: pad.l - 4, y: y(max * f) + 4, "text-anchor": "end" }, fmtNum(max * f, 2)));
  }
  if (threshold !== null) svg.append(S("line", { class: "thr", x1: pad.l, x2: width - pad.r, y1: y(threshold), y2: y(threshold) }));
  keys.forEach((k) => {
    const pts = points.map((p, i) => [x(times[i]), p[k]]).filter(([, v]) => typeof v === "number");
    if (!pts.length) return;
    svg.append(S("polyline", { class: `line-${k}`, points: pts.map(([px, v]) => `${px},${y(v)}`).join(" ") }));
  });
  points.forEach((p, i) => {
    const v = p[keys[0]];
    if (typeof v !== "number") return;
    const cls = p.breach ? "dot-breach" : p.judged === false ? "dot-unjudged" : "line-" + keys[0];
    svg.append(S("circle", { cx: x(times[i]), cy: y(v), r: p.breach ? 4.5 : 3, class: cls },
      title(`${fmtTime(p.at)}  ${keys.map((k) => `${k}=${fmtNum(p[k])}`).join("  ")}${p.breach ? "  BREACH" : p.judged === false ? "  (too few values: not judged)" : ""}`)));
  });
  if (points.length) {
    svg.append(S("text", { class: "muted-text", x: pad.l, y: height - 8 }, fmtTime(points[0].at)),
      S("text", { class: "muted-text", x: width - pad.r, y: height - 8, "text-anchor": "end" }, fmtTime(points[points.length - 1].at)));
  }
  return svg;
}

/** Job runs on a time axis, one lane per job; click a bar to select its row. */
export function timeline(runs, onPick, width = 1100) {
  const lanes = [...new Set(runs.map((r) => `${r.job_type} · ${r.lane}`))].sort();
  const laneH = 24, pad = { l: 260, r: 16, t: 22, b: 26 };
  const height = pad.t + pad.b + Math.max(1, lanes.length) * laneH;
  const svg = S("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", "data-testid": "timeline", role: "img" });
  if (!runs.length) return svg;
  const now = Date.now();
  const start = (r) => Date.parse(r.started_at);
  const end = (r) => (r.finished_at ? Date.parse(r.finished_at) : now);
  const t0 = Math.min(...runs.map(start)), t1 = Math.max(...runs.map(end), t0 + 1000);
  const w = width - pad.l - pad.r;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * w;
  lanes.forEach((lane, i) => {
    const yy = pad.t + i * laneH;
    svg.append(S("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: yy + laneH, y2: yy + laneH }),
      S("text", { x: pad.l - 8, y: yy + 16, "text-anchor": "end", class: "muted-text" }, lane.length > 42 ? lane.slice(0, 41) + "…" : lane));
  });
  for (const r of runs) {
    const i = lanes.indexOf(`${r.job_type} · ${r.lane}`);
    const x0 = x(start(r)), x1 = Math.max(x(end(r)), x0 + 3);
    const bar = S("rect", { class: `tl-bar ${r.status}`, x: x0, y: pad.t + i * laneH + 5, width: x1 - x0, height: laneH - 10, rx: 2,
      "data-run": `${r.job_type}:${r.id}` },
    title(`${r.lane} · ${r.status} · ${fmtTime(r.started_at)} · ${fmtDuration(r.duration_seconds)}${r.rows != null ? ` · ${r.rows} rows` : ""}`));
    if (onPick) bar.addEventListener("click", () => onPick(r));
    svg.append(bar);
  }
  svg.append(S("text", { class: "muted-text", x: pad.l, y: 14 }, fmtTime(new Date(t0).toISOString())),
    S("text", { class: "muted-text", x: width - pad.r, y: 14, "text-anchor": "end" }, fmtTime(new Date(t1).toISOString())));
  return svg;
}
