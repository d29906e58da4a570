// The lineage graph as layered SVG: sources | jobs | views | services, edges as curves.
import { h } from "./dom.js";

const S = (tag, attrs, ...kids) => h(`svg:${tag}`, attrs, ...kids);
const COLUMNS = ["Data sources", "Jobs", "Feature views", "Feature services"];
const KIND_LABEL = { data_source: "source", job: "job", feature_view: "view", feature_service: "service" };
const NODE_W = 210, NODE_H = 40, GAP_Y = 14, COL_W = 290, TOP = 40;

/**
 * Draw `graph` ({nodes, edges}); `onOpen(node)` runs on a click. `focus` is highlighted.
 * Hovering a node highlights its edges.
 */
export function drawLineage(graph, { focus = null, onOpen } = {}) {
  const cols = [[], [], [], []];
  for (const n of graph.nodes) cols[n.column].push(n);
  const used = cols.map((c, i) => (c.length ? i : -1)).filter((i) => i >= 0);
  const pos = new Map();
  used.forEach((ci, slot) => {
    cols[ci].forEach((n, row) => pos.set(n.id, { x: 20 + slot * COL_W, y: TOP + row * (NODE_H + GAP_Y) }));
  });
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const width = 40 + Math.max(1, used.length) * COL_W - (COL_W - NODE_W);
  const height = TOP + rows * (NODE_H + GAP_Y) + 10;
  const svg = S("svg", { viewBox: `0 0 ${width} ${height}`, width, height, "data-testid": "lineage-graph", role: "img" });
  used.forEach((ci, slot) => svg.append(S("text", { class: "col", x: 20 + slot * COL_W, y: 20 }, COLUMNS[ci])));
  const edgeEls = [];
  for (const e of graph.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
    const path = S("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "data-from": e.from, "data-to": e.to });
    edgeEls.push(path);
    svg.append(path);
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const label = n.name.length > 28 ? n.name.slice(0, 27) + "…" : n.name;
    const sub = n.kind === "job" ? `${n.job_type}${n.detail ? " · " + n.detail : ""}` : KIND_LABEL[n.kind] + (n.features ? ` · ${n.features} features` : "");
    const g = S("g", { class: `node ${n.kind}${n.id === focus ? " focus" : ""}`, transform: `translate(${p.x},${p.y})`,
      tabindex: 0, role: "link", "data-id": n.id, "data-testid": "lineage-node" },
    S("title", {}, `${n.kind.replace("_", " ")}: ${n.name}`),
    S("rect", { width: NODE_W, height: NODE_H }),
    S("text", { x: 10, y: 17, "font-size": 13, "font-weight": 600 }, label),
    S("text", { x: 10, y: 32, class: "k" }, sub.slice(0, 34)));
    const hot = (on) => edgeEls.forEach((el) => {
      if (el.dataset.from === n.id || el.dataset.to === n.id) el.classList.toggle("hot", on);
    });
    g.addEventListener("mouseenter", () => hot(true));
    g.addEventListener("mouseleave", () => hot(false));
    g.addEventListener("click", () => onOpen && onOpen(n));
    g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onOpen && onOpen(n); });
    svg.append(g);
  }
  return svg;
}
