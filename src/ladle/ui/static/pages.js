// One function per page; each returns a node (or a promise of one) for <main>.
import { api, h, badge, tags, table, sortedTable, pagedTable, objectHref, enc, fmtTime, fmtDuration, fmtNum } from "./dom.js";
import { drawLineage } from "./lineage.js";
import { timeline } from "./charts.js";
import { reportsTable } from "./monitor.js";

export { freshness, monitoring, report } from "./monitor.js";

const TITLES = {
  entities: "Entities", "data-sources": "Data sources", "feature-views": "Feature views",
  "feature-services": "Feature services", features: "Features",
};
const when = (iso) => h("time", { datetime: iso || "" }, fmtTime(iso));
const link = (kind, name) => h("a", { href: objectHref(kind, name) }, name);
const links = (kind, names) => (names || []).flatMap((n, i) => (i ? [", ", link(kind, n)] : [link(kind, n)]));
const header = (title, sub) => [h("h1", {}, title), sub ? h("p", { class: "sub" }, sub) : null];

const COLUMNS = {
  entities: [
    { key: "name", label: "Name", render: (r) => link("entities", r.name) },
    { key: "join_keys", label: "Join keys" }, { key: "value_type", label: "Type" },
    { key: "owner", label: "Owner" }, { key: "tags", label: "Tags", sortable: false },
  ],
  "data-sources": [
    { key: "name", label: "Name", render: (r) => link("data-sources", r.name) },
    { key: "type", label: "Type" }, { key: "timestamp_field", label: "Timestamp" },
    { key: "owner", label: "Owner" }, { key: "tags", label: "Tags", sortable: false },
  ],
  "feature-views": [
    { key: "name", label: "Name", render: (r) => link("feature-views", r.name) },
    { key: "entities", label: "Entities", render: (r) => links("entities", r.entities) },
    { key: "features", label: "Features", num: true },
    { key: "ttl_seconds", label: "TTL", num: true, render: (r) => fmtDuration(r.ttl_seconds) },
    { key: "source", label: "Source" }, { key: "online", label: "Online" },
    { key: "owner", label: "Owner" }, { key: "tags", label: "Tags", sortable: false },
  ],
  "feature-services": [
    { key: "name", label: "Name", render: (r) => link("feature-services", r.name) },
    { key: "feature_views", label: "Feature views", render: (r) => links("feature-views", r.feature_views) },
    { key: "features", label: "Features", num: true },
    { key: "owner", label: "Owner" }, { key: "tags", label: "Tags", sortable: false },
  ],
  features: [
    { key: "name", label: "Feature" },
    { key: "feature_view", label: "Feature view", render: (r) => link("feature-views", r.feature_view) },
    { key: "dtype", label: "Type" }, { key: "description", label: "Description" },
    { key: "owner", label: "Owner" }, { key: "tags", label: "Tags", sortable: false },
  ],
};

export async function overview() {
  const d = await api("overview");
  const cards = Object.entries(TITLES).map(([seg, label]) =>
    h("a", { class: "card", href: `#/${seg}`, "data-testid": `count-${seg}` },
      h("div", { class: "n" }, fmtNum(d.counts[seg] ?? 0)), h("div", { class: "l" }, label)));
  const health = [["failed_runs", "Failed runs (last 200)", "#/jobs"], ["freshness_breaches", "Stale views", "#/freshness"],
    ["drift_breaches", "Drifting subjects", "#/monitoring?kind=drift"], ["skew_breaches", "Skewed subjects", "#/monitoring?kind=skew"]]
    .map(([key, label, href]) => h("a", { class: `card ${d.health[key] ? "bad" : "good"}`, href, "data-testid": `health-${key}` },
      h("div", { class: "n" }, fmtNum(d.health[key])), h("div", { class: "l" }, label)));
  return h("div", {}, header(`Project ${d.project}`, `Registry version ${d.version}`),
    h("div", { class: "cards" }, cards),
    h("div", { class: "cards" }, health),
    h("h2", {}, "Recent job runs"), runsTable(d.runs),
    h("h2", {}, "Recent monitoring reports"), reportsTable(d.reports));
}

export async function projects() {
  const d = await api("projects");
  return h("div", {}, header("Projects", "Projects in this registry database; this server serves the highlighted one."),
    sortedTable([
      { key: "name", label: "Project", render: (r) => (r.served ? h("a", { href: "#/" }, h("strong", {}, r.name)) : r.name) },
      { key: "version", label: "Version", num: true },
      { key: "last_updated", label: "Last apply", render: (r) => when(r.last_updated) },
      { key: "last_applied_by", label: "Applied by" }, { key: "created", label: "Created", render: (r) => when(r.created) },
    ], d.items, "name", "asc", "projects"));
}

export async function list(segment) {
  const t = pagedTable(`objects/${segment}`, COLUMNS[segment], { placeholder: `Filter ${TITLES[segment].toLowerCase()}…` });
  await t.ready;
  return h("div", {}, header(TITLES[segment]), t);
}

function props(pairs) {
  return h("dl", { class: "props" }, pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v === "" || v === null ? "—" : v)]));
}

export async function detail(segment, name, params) {
  const d = await api(`objects/${segment}/${enc(name)}`);
  const s = d.summary, spec = d.spec;
  const tab = params.get("tab") || "overview";
  const base = `#/${segment}/${enc(name)}`;
  const tabs = h("div", { class: "tabs" },
    h("a", { href: base, class: tab === "overview" ? "active" : "" }, "Overview"),
    h("a", { href: `${base}?tab=versions`, class: tab === "versions" ? "active" : "", "data-testid": "tab-versions" }, `Versions (${d.versions})`),
    h("a", { href: `${base}?tab=spec`, class: tab === "spec" ? "active" : "" }, "Spec"),
    h("a", { href: `#/lineage?focus=${enc(`${d.kind}:${name}`)}`, "data-testid": "tab-lineage" }, "Lineage"));
  let body;
  if (tab === "versions") body = await versions(segment, name, params);
  else if (tab === "spec") body = h("div", { class: "panel" }, h("pre", { class: "json mono" }, JSON.stringify(spec, null, 2)));
  else body = overviewOf(segment, d);
  return h("div", {}, h("div", { class: "crumbs" }, h("a", { href: `#/${segment}` }, TITLES[segment]), " / ", name),
    h("h1", { "data-testid": "object-name" }, name), h("p", { class: "sub" }, s.description || "No description."), tabs, body);
}

function overviewOf(segment, d) {
  const s = d.summary, spec = d.spec;
  const common = [["Owner", s.owner], ["Tags", tags(s.tags)], ["Version", d.version ?? "—"]];
  const parts = [];
  if (segment === "entities") {
    parts.push(props([["Join keys", (s.join_keys || []).join(", ")], ["Value type", s.value_type], ...common]));
  } else if (segment === "data-sources") {
    parts.push(props([["Type", s.type], ["Timestamp field", s.timestamp_field], ["Location", spec.path || spec.table || spec.topic || ""], ...common]));
  } else if (segment === "feature-views") {
    parts.push(props([["Entities", links("entities", s.entities)], ["TTL", fmtDuration(s.ttl_seconds)], ["Online", s.online ? "yes" : "no"],
      ["Source", s.source], ["Materialized to", when(d.watermark)], ...common]));
    parts.push(h("h2", {}, "Fields"), sortedTable([
      { key: "name", label: "Name" }, { key: "dtype", label: "Type" }, { key: "role", label: "Role" },
      { key: "description", label: "Description" }, { key: "tags", label: "Tags", sortable: false },
    ], [...(spec.entity_columns || []).map((f) => ({ ...f, role: "entity key" })), ...(spec.features || []).map((f) => ({ ...f, role: "feature" }))],
    "role", "asc", "fields"));
  } else if (segment === "feature-services") {
    parts.push(props(common));
    parts.push(h("h2", {}, "Features"), sortedTable([
      { key: "view", label: "Feature view", render: (r) => link("feature-views", r.view) }, { key: "feature", label: "Feature" },
    ], (spec.features || []).flatMap((p) => (p.features || []).map((f) => ({ view: p.view, feature: typeof f === "string" ? f : f.name }))),
    "view", "asc", "service-features"));
  }
  if (d.freshness) {
    const f = d.freshness;
    parts.push(h("h2", {}, "Monitoring"), props([
      ["Freshness", h("span", { "data-testid": "view-freshness" }, badge(f.status), " ", f.age_seconds == null ? "no event measured"
        : `age ${fmtDuration(f.age_seconds)}${f.age_basis === "watermark" ? " (from the watermark)" : ""}`,
      f.slo_seconds == null ? " · no SLO" : ` · SLO ${fmtDuration(f.slo_seconds)} (${f.slo_source})`, " · ", h("a", { href: "#/freshness" }, "all views"))],
    ]));
  }
  if (d.reports && d.reports.length) parts.push(h("h2", {}, "Newest monitoring reports"), reportsTable(d.reports));
  if (d.runs) parts.push(h("h2", {}, "Recent runs"), runsTable(d.runs));
  for (const [rel, names] of Object.entries(d.related || {})) {
    const seg = rel.replace("_", "-").replace("_", "-");
    parts.push(h("h2", {}, `Used by: ${TITLES[seg] || rel}`), names.length ? h("p", {}, links(seg, names)) : h("p", { class: "muted" }, "Nothing."));
  }
  return h("div", { class: "panel pad" }, parts);
}

async function versions(segment, name, params) {
  const d = await api(`versions/${segment}/${enc(name)}`);
  const items = d.items;
  const last = items[items.length - 1].version;
  const a = Number(params.get("a") || (items.length > 1 ? items[items.length - 2].version : last));
  const b = Number(params.get("b") || last);
  const pick = (which, value) => h("select", { "data-testid": `diff-${which}`, onchange: (ev) => {
    const p = new URLSearchParams({ tab: "versions", a: which === "a" ? ev.target.value : a, b: which === "b" ? ev.target.value : b });
    location.hash = `#/${segment}/${enc(name)}?${p}`;
  } }, items.map((v) => h("option", { value: v.version, selected: v.version === value }, `v${v.version} · ${v.change} · ${fmtTime(v.applied_at)}`)));
  const diff = await api(`diff/${segment}/${enc(name)}`, { a, b });
  const show = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return h("div", {},
    sortedTable([
      { key: "version", label: "Version", num: true }, { key: "change", label: "Change", render: (r) => badge(r.change) },
      { key: "applied_at", label: "Applied", render: (r) => when(r.applied_at) }, { key: "applied_by", label: "By" },
      { key: "content_hash", label: "Hash", render: (r) => h("span", { class: "mono" }, r.content_hash.slice(0, 12)) },
    ], items, "version", "desc", "versions"),
    h("h2", {}, "Compare versions"),
    h("div", { class: "toolbar" }, pick("a", a), "→", pick("b", b)),
    h("div", { class: "panel" }, table([
      { key: "path", label: "Field", render: (r) => h("span", { class: "mono" }, r.path) },
      { key: "change", label: "Change", render: (r) => badge(r.change) },
      { key: "before", label: `v${a}`, render: (r) => h("span", { class: "mono diff-before" }, show(r.before)) },
      { key: "after", label: `v${b}`, render: (r) => h("span", { class: "mono diff-after" }, show(r.after)) },
    ], diff.changes, null, "diff")));
}

export async function lineage(params, go) {
  const focus = params.get("focus");
  const g = await api("lineage", { focus });
  const node = focus && g.nodes.find((n) => n.id === focus);
  const segOf = { data_source: "data-sources", feature_view: "feature-views", feature_service: "feature-services" };
  const open = (n) => go(`#/lineage?focus=${enc(n.id)}`);
  const info = node ? h("div", { class: "toolbar", "data-testid": "lineage-focus" }, h("strong", {}, `${node.kind.replace("_", " ")}: ${node.name}`),
    segOf[node.kind] ? h("a", { href: objectHref(segOf[node.kind], node.name), "data-testid": "lineage-open" }, "Open details →") : null,
    node.kind === "job" ? h("a", { href: "#/jobs" }, "Job history →") : null,
    h("a", { href: "#/lineage" }, "Whole graph")) : h("p", { class: "sub" }, "Click a node to follow its paths; click again to open it.");
  const legend = h("div", { class: "legend" },
    ...[["data source", "data_source"], ["job", "job"], ["feature view", "feature_view"], ["feature service", "feature_service"]]
      .map(([l, c]) => h("span", {}, h("i", { class: `key-${c}` }), l)));
  const svg = drawLineage(g, { focus, onOpen: (n) => (n.id === focus && segOf[n.kind] ? go(objectHref(segOf[n.kind], n.name)) : open(n)) });
  const cut = g.truncated ? h("p", { class: "error", "data-testid": "lineage-truncated" },
    `Showing ${g.truncated.shown} of ${g.truncated.total} nodes. Open an object (or search) and use its Lineage tab to see all of its paths.`) : null;
  return h("div", {}, header("Lineage", `${g.nodes.length} nodes, ${g.edges.length} edges`), info, cut, legend, h("div", { class: "graph" }, svg));
}

function runsTable(runs) {
  return sortedTable([
    { key: "job_type", label: "Job" }, { key: "lane", label: "Name" },
    { key: "status", label: "Status", render: (r) => badge(r.status) },
    { key: "started_at", label: "Started", render: (r) => when(r.started_at) },
    { key: "duration_seconds", label: "Duration", num: true, render: (r) => fmtDuration(r.duration_seconds) },
    { key: "rows", label: "Rows", num: true }, { key: "detail", label: "Detail" },
  ], runs, "started_at", "desc", "runs");
}

export async function jobs(params, go) {
  const type = params.get("type") || "";
  const d = await api("jobs", { type });
  const pick = h("select", { "data-testid": "job-type", onchange: (ev) => go(`#/jobs${ev.target.value ? "?type=" + ev.target.value : ""}`) },
    [["", "All jobs"], ["materialize", "Materialization"], ["schedule", "Schedules"], ["stream", "Stream sessions"]]
      .map(([v, l]) => h("option", { value: v, selected: v === type }, l)));
  const runs = runsTable(d.runs);
  return h("div", {}, header("Jobs", "Materialization runs, scheduled fires and stream-process sessions."),
    h("div", { class: "toolbar" }, pick),
    h("div", { class: "panel pad" }, timeline(d.runs)),
    h("h2", {}, "Per job"),
    sortedTable([
      { key: "job_type", label: "Job" }, { key: "lane", label: "Name" }, { key: "runs", label: "Runs", num: true },
      { key: "failed", label: "Failed", num: true }, { key: "rows", label: "Rows", num: true },
      { key: "mean_duration_seconds", label: "Mean duration", num: true, render: (r) => fmtDuration(r.mean_duration_seconds) },
      { key: "last_status", label: "Last", render: (r) => badge(r.last_status) },
    ], d.summary, "lane", "asc", "job-summary"),
    h("h2", {}, "Runs"), runs);
}

export async function searchPage(params) {
  const q = params.get("q") || "";
  const d = await api("search", { q, limit: 200 });
  return h("div", {}, header(`Search: ${q}`, `${d.items.length} results`),
    table([
      { key: "kind", label: "Kind" },
      { key: "name", label: "Name", render: (r) => resultLink(r) },
      { key: "feature_view", label: "Feature view" }, { key: "description", label: "Description" },
    ], d.items, null, "search-table"));
}

export function resultLink(r) {
  return r.kind === "features"
    ? h("a", { href: objectHref("feature-views", r.feature_view) }, `${r.feature_view}:${r.name}`)
    : h("a", { href: objectHref(r.kind, r.name) }, r.name);
}
