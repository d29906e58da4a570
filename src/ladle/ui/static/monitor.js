// The monitoring pages: freshness against each view's SLO, the report list with the drift baselines,
// and one drift or skew report (payload shapes: docs/monitoring.md).
import { api, h, badge, sortedTable, objectHref, enc, fmtTime, fmtDuration, fmtNum } from "./dom.js";
import { distribution, series } from "./charts.js";

const when = (iso) => h("time", { datetime: iso || "" }, fmtTime(iso));
const link = (kind, name) => h("a", { href: objectHref(kind, name) }, name);
const header = (title, sub) => [h("h1", {}, title), sub ? h("p", { class: "sub" }, sub) : null];
const sci = (x) => (typeof x === "number" && x !== 0 && Math.abs(x) < 0.001 ? x.toExponential(1) : fmtNum(x));
const pct = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : "—");

export function reportsTable(reports) {
  return sortedTable([
    { key: "kind", label: "Kind" },
    { key: "subject", label: "Subject", render: (r) => (r.kind === "freshness" ? h("a", { href: "#/freshness" }, r.subject)
      : h("a", { href: `#/reports/${r.kind}/${enc(r.subject)}?id=${r.report_id}` }, r.subject)) },
    { key: "status", label: "Status", render: (r) => badge(r.status) },
    { key: "breaches", label: "Breaches", num: true }, { key: "created_at", label: "When", render: (r) => when(r.created_at) },
  ], reports, "created_at", "desc", "reports");
}

const AGE_BASIS = { report: "from the newest freshness report", watermark: "estimated from the materialization watermark (no check yet)" };

export async function freshness() {
  const d = await api("freshness");
  return h("div", {}, header("Freshness",
    "Each view's age (now minus its newest event) against its freshness SLO: the view's ladle.freshness_slo tag, else monitoring.freshness_slo_seconds. " +
    "The newest event comes from the newest freshness report (ladle monitor freshness); a view not checked yet is aged from its materialization watermark."),
  sortedTable([
    { key: "feature_view", label: "Feature view", render: (r) => link("feature-views", r.feature_view) },
    { key: "status", label: "Status", render: (r) => (r.error ? h("span", { title: r.error }, badge(r.status)) : badge(r.status)) },
    { key: "age_seconds", label: "Age", num: true, render: (r) => h("span", { title: AGE_BASIS[r.age_basis] || "never measured" },
      fmtDuration(r.age_seconds), r.age_basis === "watermark" ? h("span", { class: "muted" }, " (watermark)") : null) },
    { key: "slo_seconds", label: "SLO", num: true, render: (r) => (r.slo_seconds == null ? "—"
      : [fmtDuration(r.slo_seconds), h("span", { class: "muted" }, ` (${r.slo_source})`)]) },
    { key: "newest_event", label: "Newest event", render: (r) => when(r.newest_event) },
    { key: "judged_on", label: "Judged on" },
    { key: "watermark", label: "Materialized to", render: (r) => when(r.watermark) },
    { key: "checked_at", label: "Checked", render: (r) => (r.checked_at ? [when(r.checked_at), " ", badge(r.reported_status)] : "never") },
  ], d.items, "status", "asc", "freshness"),
  d.items.some((r) => r.error) ? h("p", { class: "error", "data-testid": "freshness-errors" }, d.items.filter((r) => r.error).map((r) => r.error).join("; ")) : null);
}

function baselinesTable(items) {
  return sortedTable([
    { key: "name", label: "Baseline" },
    { key: "created_at", label: "Saved", render: (r) => when(r.created_at) },
    { key: "saves", label: "Saves", num: true }, { key: "rows", label: "Training rows", num: true },
    { key: "feature_views", label: "Feature views", sortable: false,
      render: (r) => r.feature_views.flatMap((v, i) => (i ? [", ", link("feature-views", v)] : [link("feature-views", v)])) },
    { key: "features", label: "Features", sortable: false, render: (r) => h("span", { class: "mono" },
      r.features.map((f) => `${f.ref.split(":").slice(1).join(":")} (${f.type}${f.type === "numeric" && f.range ? ` ${fmtNum(f.range[0], 2)}–${fmtNum(f.range[1], 2)}` : ""})`).join(", ")) },
    { key: "feature_service", label: "Service" },
  ], items, "name", "asc", "baselines");
}

export async function monitoring(params, go) {
  const kind = params.get("kind") || "";
  const [d, b] = await Promise.all([api("reports", { kind }), kind === "" || kind === "drift" ? api("baselines") : null]);
  const pick = h("select", { "data-testid": "report-kind", onchange: (ev) => go(`#/monitoring${ev.target.value ? "?kind=" + ev.target.value : ""}`) },
    [["", "All reports"], ["drift", "Drift"], ["skew", "Skew"], ["freshness", "Freshness"]].map(([v, l]) => h("option", { value: v, selected: v === kind }, l)));
  return h("div", {}, header("Drift & skew", "Monitoring reports, newest first. Open one for its plots."),
    h("div", { class: "toolbar" }, pick), reportsTable(d.items),
    b ? [h("h2", {}, "Drift baselines"),
      h("p", { class: "sub" }, "Training-set distributions drift is measured against (ladle monitor baseline); the newest save of a name is in force."),
      b.items.length ? baselinesTable(b.items) : h("p", { class: "muted", "data-testid": "no-baselines" }, "No baseline saved yet.")] : null);
}

function reportHead(kind, subject, r, d, go, extra) {
  const pick = h("select", { "data-testid": "report-pick", onchange: (ev) => go(`#/reports/${kind}/${enc(subject)}?id=${ev.target.value}`) },
    d.history.map((x) => h("option", { value: x.report_id, selected: x.report_id === r.report_id }, `#${x.report_id} · ${x.status} · ${fmtTime(x.created_at)}`)));
  return h("div", {}, h("div", { class: "crumbs" }, h("a", { href: "#/monitoring" }, "Drift & skew"), " / ", kind),
    h("h1", { "data-testid": "report-title" }, `${kind === "drift" ? "Drift" : "Skew"}: ${subject}`),
    h("div", { class: "toolbar" }, badge(r.status), pick, h("span", { class: "muted", "data-testid": "report-meta" }, extra)));
}

function skewReport(subject, r, d, go) {
  const p = r.payload;
  const features = Object.entries(p.features || {}).map(([name, f]) => ({ name, ...f }));
  const meta = `read at ${(p.read_times || []).map(fmtTime).join(", ") || fmtTime(r.created_at)} · seed ${p.seed ?? "—"}` +
    ` · tolerance rel ${sci(p.tolerance?.rel)} abs ${sci(p.tolerance?.abs)} · allowed rate ${pct(p.max_rate)}`;
  return h("div", {}, reportHead("skew", subject, r, d, go, meta),
    h("p", {}, `${fmtNum(p.sampled)} entity rows sampled.`),
    sortedTable([{ key: "name", label: "Feature" }, { key: "compared", label: "Compared", num: true },
      { key: "mismatches", label: "Mismatches", num: true }, { key: "rate", label: "Rate", num: true, render: (x) => pct(x.rate) },
      { key: "status", label: "Status", sortable: false, render: (x) => badge(x.rate > (p.max_rate ?? 0) ? "breach" : "ok") }],
    features, "rate", "desc", "skew"),
    h("div", { class: "grid2" }, Object.entries(d.series).filter(([, pts]) => pts.some((x) => x.rate > 0)).map(([name, pts]) =>
      h("div", { class: "panel pad" }, h("h2", {}, `${name}: mismatch rate over time`), series(pts, ["rate"], p.max_rate ?? null)))),
    p.examples && p.examples.length ? [h("h2", {}, "Examples"), sortedTable([
      { key: "feature", label: "Feature", render: (x) => `${x.view}:${x.feature}` },
      { key: "entity", label: "Entity", sortable: false, render: (x) => h("span", { class: "mono" }, JSON.stringify(x.entity)) },
      { key: "online", label: "Online", render: (x) => h("span", { class: "mono" }, JSON.stringify(x.online)) },
      { key: "online_status", label: "Online status" },
      { key: "offline", label: "Offline (point in time)", render: (x) => h("span", { class: "mono" }, JSON.stringify(x.offline)) },
      { key: "online_event_timestamp", label: "Online event", render: (x) => when(x.online_event_timestamp) },
    ], p.examples, "feature", "asc", "skew-examples")] : null);
}

function driftCard(f, pts) {
  const t = f.thresholds || {};
  const scores = [`${f.type}`, `PSI ${fmtNum(f.psi)}`];
  if (f.type === "numeric") scores.push(`KS ${fmtNum(f.ks)} (p ${sci(f.ks_p)})`, `out of range ${pct(f.out_of_range)}`);
  else scores.push(`χ² p ${sci(f.chi2_p)}`);
  scores.push(`nulls ${pct(f.null_rate?.baseline)} → ${pct(f.null_rate?.current)}`);
  if (f.count) scores.push(`values ${fmtNum(f.count.baseline)} → ${fmtNum(f.count.current)}`);
  const status = f.judged === false ? "not judged" : f.breach ? "breach" : "ok";
  return h("div", { class: "panel pad", "data-testid": "drift-feature", "data-feature": f.name },
    h("h2", {}, f.name, " ", badge(status)),
    h("p", { class: "muted" }, scores.join(" · ")),
    f.breaches && f.breaches.length ? h("p", { "data-testid": "drift-breaches" }, "Past threshold: ", f.breaches.map((k) => `${k} (${fmtNum(t[k])})`).join(", ")) : null,
    f.judged === false ? h("p", { class: "muted" }, `Fewer than ${t.min_rows} values in the window: reported, not judged.`) : null,
    f.bins ? distribution(f.bins) : h("p", { class: "muted" }, "No distribution in this report."),
    pts ? [h("div", { class: "muted" }, `${f.type === "numeric" ? "PSI (blue) and KS (purple)" : "PSI"} over time; red: breach, dashed: not judged`),
      series(pts, f.type === "numeric" ? ["psi", "ks"] : ["psi"], typeof t.psi === "number" ? t.psi : null)] : null);
}

export async function report(kind, subject, params, go) {
  const d = await api(`reports/${kind}/${enc(subject)}`, { id: params.get("id") });
  const r = d.report;
  if (kind === "skew") return skewReport(subject, r, d, go);
  const p = r.payload;
  const w = p.window || { start: r.window_start, end: r.window_end };
  const meta = [`window ${fmtTime(w.start)} → ${fmtTime(w.end)}`, p.source ? `${p.source} values` : null,
    p.variant ? `variant ${p.variant}` : null].filter(Boolean).join(" · ");
  const rows = Object.entries(p.features || {}).map(([name, f]) => ({ name, ...f, status: f.judged === false ? "not judged" : f.breach ? "breach" : "ok" }));
  return h("div", {}, reportHead("drift", subject, r, d, go, meta),
    p.baseline ? h("p", { "data-testid": "drift-baseline" }, "Against baseline ", h("a", { href: "#/monitoring?kind=drift" }, h("strong", {}, p.baseline)),
      ` saved ${fmtTime(p.baseline_created_at)}.`) : null,
    sortedTable([
      { key: "name", label: "Feature" }, { key: "type", label: "Type" }, { key: "psi", label: "PSI", num: true },
      { key: "ks", label: "KS", num: true }, { key: "chi2_p", label: "χ² p", num: true, render: (x) => sci(x.chi2_p) },
      { key: "out_of_range", label: "Out of range", num: true, render: (x) => pct(x.out_of_range) },
      { key: "breaches", label: "Past threshold", sortable: false, render: (x) => (x.breaches || []).join(", ") },
      { key: "status", label: "Status", render: (x) => badge(x.status) },
    ], rows, "psi", "desc", "drift"),
    h("div", { class: "grid2 spaced" }, rows.map((f) => driftCard(f, d.series[f.name]))));
}
