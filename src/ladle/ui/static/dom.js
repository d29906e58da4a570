// DOM and API helpers shared by every page. Text goes in with textContent only (never innerHTML).

export const PREFIX = document.body.dataset.prefix || "/ui";
const TOKEN_KEY = "ladle.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** GET /ui/api/<path>?<params> as JSON, with the stored credential. */
export async function api(path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
  const url = `${PREFIX}/api/${path}${qs.toString() ? "?" + qs : ""}`;
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const res = await fetch(url, { headers });
  let body = null;
  try { body = await res.json(); } catch { body = null; }
  if (!res.ok) throw new ApiError(res.status, (body && body.detail) || `${res.status} ${res.statusText}`);
  return body;
}

/** h("a", {href, class, onclick, dataset: {...}}, child, ...): an element; strings become text. */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const enc = encodeURIComponent;
export function objectHref(kind, name) { return `#/${kind}/${enc(name)}`; }

export function badge(status) { return h("span", { class: `badge ${status}`, "data-testid": "badge" }, String(status)); }

export function tags(map) {
  return Object.entries(map || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`));
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, "Z");
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Number(seconds);
  if (s === 0) return "0 (no limit)";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 2 : 0)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined) return "—";
  return typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString("en") : x.toFixed(digits)) : String(x);
}

/** A table. columns: [{key, label, num, sortable, render(row)}]; sort: {key, order, onSort(key)}. */
export function table(columns, rows, sort = null, testid = "table") {
  const head = h("tr", {}, columns.map((c) => {
    const active = sort && sort.key === c.key;
    const th = h("th", { class: [c.num ? "num" : "", sort && c.sortable !== false ? "sortable" : ""].join(" "),
      "data-key": c.key, "aria-sort": active ? (sort.order === "asc" ? "ascending" : "descending") : null },
    c.label, active ? h("span", { class: "arrow" }, sort.order === "asc" ? "▲" : "▼") : null);
    if (sort && c.sortable !== false) th.addEventListener("click", () => sort.onSort(c.key));
    return th;
  }));
  const body = h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, columns.map((c) =>
    h("td", { class: c.num ? "num" : "" }, c.render ? c.render(r) : fmtCell(r[c.key])))))
    : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing here yet.")));
  return h("table", { "data-testid": testid }, h("thead", {}, head), body);
}

function fmtCell(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return Object.keys(v).length ? tags(v) : "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  return fmtNum(v);
}

/** Sort rows in the browser (for small, unpaged tables). */
export function sortRows(rows, key, order) {
  const val = (x) => (x === null || x === undefined ? "" : typeof x === "number" ? x : String(x).toLowerCase());
  const out = [...rows].sort((a, b) => (val(a[key]) < val(b[key]) ? -1 : val(a[key]) > val(b[key]) ? 1 : 0));
  return order === "desc" ? out.reverse() : out;
}

/** A client-sorted table that re-renders itself on header clicks. */
export function sortedTable(columns, rows, key, order = "asc", testid = "table") {
  const holder = h("div", { class: "panel" });
  const draw = () => {
    const sort = { key, order, onSort: (k) => { order = k === key && order === "asc" ? "desc" : "asc"; key = k; draw(); } };
    holder.replaceChildren(table(columns, sortRows(rows, key, order), sort, testid));
  };
  draw();
  return holder;
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/**
 * A server-paged table: `endpoint` answers {total, offset, limit, items} to q, sort, order, offset, limit.
 */
export function pagedTable(endpoint, columns, { sort = "name", order = "asc", limit = 50, placeholder = "Filter…" } = {}) {
  const state = { q: "", sort, order, offset: 0, limit };
  const filter = h("input", { type: "search", placeholder, "aria-label": "Filter", "data-testid": "filter" });
  const info = h("span", { class: "muted", "data-testid": "total" });
  const panel = h("div", { class: "panel" });
  const prev = h("button", { type: "button", "data-testid": "prev" }, "‹ Previous");
  const next = h("button", { type: "button", "data-testid": "next" }, "Next ›");
  const where = h("span", { class: "muted", "data-testid": "page" });
  const wrap = h("div", {}, h("div", { class: "toolbar" }, filter, info), panel,
    h("div", { class: "panel pager" }, prev, next, h("span", { class: "spacer" }), where));
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const data = await api(endpoint, state);
    if (mine !== seq) return;
    const onSort = (k) => { state.order = k === state.sort && state.order === "asc" ? "desc" : "asc"; state.sort = k; state.offset = 0; load(); };
    panel.replaceChildren(table(columns, data.items, { key: state.sort, order: state.order, onSort }));
    info.textContent = `${data.total.toLocaleString("en")} ${data.total === 1 ? "match" : "matches"}`;
    const last = Math.min(data.offset + data.limit, data.total);
    where.textContent = data.total ? `${data.offset + 1}–${last} of ${data.total.toLocaleString("en")}` : "";
    prev.disabled = data.offset === 0;
    next.disabled = last >= data.total;
    wrap.dataset.loaded = String(mine);
  }
  filter.addEventListener("input", debounce(() => { state.q = filter.value; state.offset = 0; load(); }, 150));
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  next.addEventListener("click", () => { state.offset += state.limit; load(); });
  wrap.ready = load();
  return wrap;
}
