// The shell: hash router, sign-in, the search box and the theme switch.
import { api, h, ApiError, token, setToken, debounce, PREFIX } from "./dom.js";
import * as pages from "./pages.js";

const content = document.getElementById("content");
const LISTS = new Set(["entities", "data-sources", "feature-views", "feature-services", "features"]);

function go(hash) { if (location.hash === hash) route(); else location.hash = hash; }

function parse() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function page({ parts, params }) {
  const [first, ...rest] = parts;
  if (!first) return ["overview", () => pages.overview()];
  if (first === "projects") return ["projects", () => pages.projects()];
  if (LISTS.has(first) && rest.length === 0) return [first, () => pages.list(first)];
  if (LISTS.has(first) && first !== "features") return [first, () => pages.detail(first, rest.join("/"), params)];
  if (first === "lineage") return ["lineage", () => pages.lineage(params, go)];
  if (first === "jobs") return ["jobs", () => pages.jobs(params, go)];
  if (first === "freshness") return ["freshness", () => pages.freshness()];
  if (first === "monitoring") return ["monitoring", () => pages.monitoring(params, go)];
  if (first === "reports" && rest.length >= 2) return ["monitoring", () => pages.report(rest[0], rest.slice(1).join("/"), params, go)];
  if (first === "search") return ["", () => pages.searchPage(params)];
  return ["", async () => h("div", {}, h("h1", {}, "Not found"), h("p", {}, "No such page. "), h("a", { href: "#/" }, "Back to the overview"))];
}

let routeSeq = 0;
async function route() {
  const mine = ++routeSeq;
  const [active, render] = page(parse());
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === active);
  document.body.dataset.state = "loading";
  try {
    const node = await render();
    if (mine !== routeSeq) return;
    content.replaceChildren(node);
  } catch (err) {
    if (mine !== routeSeq) return;
    if (err instanceof ApiError && err.status === 401) return signIn(err.message);
    content.replaceChildren(h("div", {}, h("h1", {}, err.status === 403 ? "Not allowed" : err.status === 404 ? "Not found" : "Something went wrong"),
      h("p", { class: "error", "data-testid": "error" }, err.message)));
  }
  document.body.dataset.state = "ready";
  document.body.dataset.route = location.hash || "#/";
  if (window.ladle.readyAt === undefined) window.ladle.readyAt = performance.now(); // first page with its data
  document.title = `${content.querySelector("h1")?.textContent || "Ladle"} · Ladle`;
}

function signIn(message) {
  setToken(null);
  const input = h("input", { type: "password", id: "token", autocomplete: "off", "data-testid": "token",
    placeholder: "API key or bearer token" });
  const form = h("form", { class: "panel pad login", "data-testid": "login" },
    h("h1", {}, "Sign in"),
    h("p", { class: "sub" }, "This feature server requires a credential. It is kept in this tab only (sessionStorage) and sent as a bearer token."),
    message && message !== "Missing authentication token" ? h("p", { class: "error" }, message) : null,
    h("label", { for: "token" }, "API key or token"), input,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    await start();
  });
  content.replaceChildren(form);
  document.body.dataset.state = "ready";
  input.focus();
}

async function start() {
  try {
    const s = await api("session");
    document.getElementById("project-name").textContent = s.project;
    document.getElementById("whoami").textContent = s.auth === "no_auth" ? "" : `signed in as ${s.principal}`;
    document.getElementById("signout").hidden = s.auth === "no_auth";
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signIn(err.message);
    content.replaceChildren(h("p", { class: "error" }, err.message));
    return;
  }
  await route();
}

// -- search box: server-side results as you type; Enter opens the full result page --
const search = document.getElementById("search");
const results = document.getElementById("search-results");
let searchSeq = 0;
const runSearch = debounce(async () => {
  const q = search.value.trim();
  const mine = ++searchSeq;
  if (!q) { results.hidden = true; return; }
  try {
    const d = await api("search", { q, limit: 12 });
    if (mine !== searchSeq) return;
    results.replaceChildren(...(d.items.length ? d.items.map((r) => {
      const a = pages.resultLink(r);
      a.dataset.testid = "search-hit";
      a.prepend(h("span", { class: "kind" }, r.kind.replace("-", " ")));
      a.addEventListener("click", () => { results.hidden = true; });
      return a;
    }) : [h("div", { class: "empty" }, "No matches.")]));
    results.hidden = false;
  } catch { results.hidden = true; }
}, 120);
search.addEventListener("input", runSearch);
// Arrow keys move through the hits, Enter on a selected hit opens it (else the full result page).
search.addEventListener("keydown", (ev) => {
  const hits = [...results.querySelectorAll("a")];
  if (results.hidden || !hits.length || !["ArrowDown", "ArrowUp", "Enter"].includes(ev.key)) return;
  const at = hits.findIndex((a) => a.classList.contains("sel"));
  if (ev.key === "Enter") {
    if (at < 0) return;
    ev.preventDefault();
    results.hidden = true;
    location.hash = hits[at].getAttribute("href");
    return;
  }
  ev.preventDefault();
  const next = ev.key === "ArrowDown" ? Math.min(at + 1, hits.length - 1) : Math.max(at - 1, 0);
  hits.forEach((a, i) => a.classList.toggle("sel", i === next));
  hits[next].scrollIntoView({ block: "nearest" });
});
document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  results.hidden = true;
  go(`#/search?q=${encodeURIComponent(search.value.trim())}`);
});
document.addEventListener("click", (ev) => { if (!ev.target.closest("#search-form")) results.hidden = true; });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "/" && document.activeElement !== search && !/input|select|textarea/i.test(document.activeElement.tagName)) {
    ev.preventDefault(); search.focus();
  }
  if (ev.key === "Escape") results.hidden = true;
});

// -- theme: the system's by default, remembered once chosen --
const root = document.documentElement;
const saved = localStorage.getItem("ladle.theme");
root.dataset.theme = saved || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
document.getElementById("theme").addEventListener("click", () => {
  root.dataset.theme = root.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("ladle.theme", root.dataset.theme);
});
document.getElementById("signout").addEventListener("click", () => { setToken(null); signIn(""); });

window.addEventListener("hashchange", route);
window.ladle = { prefix: PREFIX, hasToken: () => Boolean(token()), readyAt: undefined };
start();
