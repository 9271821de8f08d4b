// Drives the dashboard in Debian's Chromium (headless, through playwright-core) against a live
// `ducktail run`, for tests/e2e/dashboard.rs. One argument: a JSON object with
//   base_url, token, chromium, playwright (the playwright-core folder), storage (the watched
//   storage/ folder), live_source (a storage/ folder to copy in while the page is open),
//   root_session (a session with sub-agents), hostile_title, screenshots ("" = none). The daemon
//   also reads the shared Claude Code and Codex fixtures (7 Codex sessions, ids 01a25053-…/01a25054-…).
// Prints one JSON line {checks, failures}; exits 1 when a check failed.
"use strict";

const fs = require("fs");
const path = require("path");

const config = JSON.parse(process.argv[2]);
const { chromium } = require(config.playwright);

const checks = [];
const failures = [];
function check(name, ok, detail) {
  checks.push(name);
  if (!ok) failures.push(`${name}: ${detail}`);
}

const APP_NAMES = { opencode: "OpenCode", claude_code: "Claude Code", codex: "Codex" };

function usd(value) {
  return "$" + Number(value).toFixed(2);
}

// A cost cell: responses of models without a price make it a lower bound ("≥ $1.23"), or
// "unpriced" when nothing was priced.
function costText(value, unpriced) {
  if (!unpriced) return usd(value);
  return Number(value) ? "≥ " + usd(value) : "unpriced";
}

function copyTree(from, to) {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      fs.mkdirSync(target, { recursive: true });
      copyTree(source, target);
    } else {
      fs.copyFileSync(source, target);
    }
  }
}

async function main() {
  const browser = await chromium.launch({
    executablePath: config.chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const origin = new URL(config.base_url).origin;
  const consoleErrors = [];
  const foreignRequests = [];
  const dialogs = [];
  const context = await browser.newContext({ colorScheme: "light", viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // A missing element fails its check in seconds, not after playwright's default 30 s.
  page.setDefaultTimeout(10000);
  page.on("console", (message) => {
    // The login step answers 401 once by design; the browser logs that failed fetch.
    if (message.type() === "error" && !/401/.test(message.text())) consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) foreignRequests.push(url);
  });
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });

  const api = async (route) =>
    page.evaluate(async (route) => {
      const response = await fetch(route, { credentials: "same-origin" });
      return { status: response.status, body: await response.json() };
    }, route);
  const loaded = async () => page.waitForSelector("main[data-loaded='true']", { timeout: 15000 });
  const text = async (selector) => (await page.locator(selector).first().textContent()).trim();

  // The token: the page asks for it, and keeps it in an HttpOnly cookie.
  const firstLoad = [];
  page.on("response", (response) => firstLoad.push(response));
  await page.goto(config.base_url + "/#/");
  if (config.token) {
    await page.waitForSelector("input[type='password']", { timeout: 15000 });
    check("the token is asked for when http.token is set", true, "");
    await page.fill("input[type='password']", config.token);
    await page.keyboard.press("Enter");
  }
  await loaded();
  const cookies = await context.cookies();
  check("the token lives in an HttpOnly cookie", cookies.some((cookie) => cookie.name === "ducktail_token" && cookie.httpOnly), JSON.stringify(cookies));
  check("no request URL carries the token", !firstLoad.some((response) => config.token && response.url().includes(config.token)), "");
  let transferred = 0;
  for (const response of firstLoad) {
    // The event stream never ends: its body would never arrive.
    if (response.url().includes("/api/events")) continue;
    const body = await response.body().catch(() => Buffer.alloc(0));
    transferred += body.length;
  }
  check("the first load transfers at most 150 KB", transferred <= 150 * 1024, `${transferred} bytes`);

  // Overview: the figures are the API's.
  const all = await api("/api/usage?group_by=day");
  check("spend, all time, is /api/usage's total", (await text("[data-testid='spend-all']")) === usd(all.body.total.usage.cost), `${await text("[data-testid='spend-all']")} vs ${all.body.total.usage.cost}`);
  for (const [testid, field] of [
    ["tokens-input", "input"],
    ["tokens-output", "output"],
    ["tokens-reasoning", "reasoning"],
    ["tokens-cache-read", "cache_read"],
    ["tokens-cache-write", "cache_write"],
  ]) {
    const shown = (await text(`[data-testid='${testid}']`)).replace(/[^0-9]/g, "");
    check(`${testid} is /api/usage's total`, shown === String(all.body.total.usage[field]), `${shown} vs ${all.body.total.usage[field]}`);
  }
  for (const testid of ["spend-today", "spend-7d", "spend-30d", "spend-last-hour"]) {
    check(`${testid} is dollars with two decimals`, /^\$\d[\d,]*\.\d\d$/.test(await text(`[data-testid='${testid}']`)), await text(`[data-testid='${testid}']`));
  }
  // Overview: projects go by their names (/api/projects' labels), not their ids.
  const projectLabels = new Map((await api("/api/projects")).body.projects.map((project) => [project.id, project.label]));
  check("a Claude Code project is called by its folder", projectLabels.get("/home/dev/code/web-crawler") === "web-crawler", JSON.stringify(Array.from(projectLabels)));
  const projectLinks = await page.$$eval("a[href^='#/sessions?project=']", (links) => links.map((link) => [link.title, link.textContent.trim()]));
  const misnamed = projectLinks.filter(([id, shown]) => shown !== projectLabels.get(id));
  check("the top projects show their labels", projectLinks.length > 0 && misnamed.length === 0, JSON.stringify({ misnamed, projectLinks }));
  // At 1280 px every table of the overview fits its card: no column is cut off.
  const overflowing = await page.$$eval("main section", (sections) =>
    sections.filter((section) => section.querySelector("table") && section.scrollWidth > section.clientWidth + 1).map((section) => section.querySelector("h2")?.textContent));
  check("every overview table fits its card at 1280 px", overflowing.length === 0, JSON.stringify(overflowing));
  if (config.screenshots) await page.screenshot({ path: path.join(config.screenshots, "overview-light.png"), fullPage: true });

  // Sessions: a hostile title is text.
  await page.goto(config.base_url + "/#/sessions");
  await loaded();
  const tableText = await text("[data-testid='sessions-table']");
  check("a hostile title shows as text", tableText.includes(config.hostile_title), tableText.slice(0, 200));
  check("a hostile title makes no element", (await page.locator("img[src='x']").count()) === 0, "an <img src=x> exists");
  if (config.screenshots) await page.screenshot({ path: path.join(config.screenshots, "sessions-light.png"), fullPage: true });

  // Sessions: each row names its agent app, as the API does.
  const firstPage = (await api("/api/sessions?limit=50")).body.sessions;
  const shownApps = await page.$$eval("[data-testid='sessions-table'] tbody tr[data-session-id]", (rows) =>
    rows.map((row) => [row.dataset.sessionId, row.querySelector("[data-field='app']").textContent.trim()]),
  );
  const wrongApps = shownApps.filter(([id, label]) => {
    const session = firstPage.find((row) => row.id === id);
    return !session || APP_NAMES[session.app] !== label;
  });
  check("each session row shows its app's name", shownApps.length === firstPage.length && wrongApps.length === 0, JSON.stringify(wrongApps.slice(0, 5)));
  check("a Claude Code session shows with its label", shownApps.some(([, label]) => label === "Claude Code"), JSON.stringify(shownApps.slice(0, 12)));

  // Sessions: the app filter asks /api/sessions?app= and shows only that app's sessions.
  const rowIds = async () => page.$$eval("[data-testid='sessions-table'] tbody tr[data-session-id]", (rows) => rows.map((row) => row.dataset.sessionId));
  const codex = (await api("/api/sessions?app=codex&limit=500")).body.sessions.map((session) => session.id);
  check("the API has the 7 Codex fixture sessions", codex.length === 7 && codex.every((id) => /^01a2505[34]-/.test(id)), JSON.stringify(codex));
  await page.selectOption("#f-app", "codex");
  await page.click("form[role='search'] button[type='submit']");
  await page
    .waitForFunction(() => {
      const labels = Array.from(document.querySelectorAll("[data-testid='sessions-table'] tbody td[data-field='app']"), (cell) => cell.textContent.trim());
      return labels.length > 0 && labels.every((label) => label === "Codex");
    })
    .catch(() => {});
  const filtered = await rowIds();
  check("filtering by Codex shows exactly the Codex sessions", filtered.length === 7 && filtered.every((id) => codex.includes(id)), JSON.stringify(filtered));
  check("the app filter is kept in the address", (await page.evaluate(() => location.hash)).includes("app=codex"), await page.evaluate(() => location.hash));
  await page.goto(config.base_url + "/#/sessions?app=claude_code");
  await loaded();
  const claude = (await api("/api/sessions?app=claude_code&limit=500")).body.sessions.map((session) => session.id);
  const claudeShown = await rowIds();
  check("an address with app=claude_code shows the Claude Code sessions", claude.length > 0 && claudeShown.length === claude.length && claudeShown.every((id) => claude.includes(id)), `${JSON.stringify(claudeShown)} vs ${JSON.stringify(claude)}`);
  check("the app menu shows the address's app", (await page.inputValue("#f-app")) === "claude_code", await page.inputValue("#f-app"));

  // Sessions: a click on Cost sorts every session by the API (the first page is its top page),
  // and the model filter shows the API's sessions of that model.
  await page.goto(config.base_url + "/#/sessions?limit=25");
  await loaded();
  const byCost = (await api("/api/sessions?sort=cost&order=desc&limit=25")).body.sessions.map((session) => session.id);
  await page.click("[data-testid='sessions-table'] th button:has-text('Cost')");
  await page.waitForFunction((wanted) => {
    const ids = Array.from(document.querySelectorAll("[data-testid='sessions-table'] tbody tr[data-session-id]"), (row) => row.dataset.sessionId);
    return ids.join() === wanted.join();
  }, byCost).catch(() => {});
  const costShown = await rowIds();
  check("sorting by cost shows the API's most expensive sessions, in its order", costShown.join() === byCost.join(), `${JSON.stringify(costShown.slice(0, 5))} vs ${JSON.stringify(byCost.slice(0, 5))}`);
  check("the sort is kept in the address", (await page.evaluate(() => location.hash)).includes("sort=cost"), await page.evaluate(() => location.hash));
  check("the sorted column says so", (await page.locator("th[aria-sort='descending']").textContent()).includes("Cost"), await page.locator("th[aria-sort='descending']").textContent());
  const models = (await api("/api/usage?group_by=model")).body.rows.map((row) => row.key);
  const model = models[models.length - 1];
  const ofModel = (await api("/api/sessions?limit=500&model=" + encodeURIComponent(model))).body.sessions.map((session) => session.id);
  await page.waitForSelector(`#f-model option[value='${model}']`, { state: "attached" }).catch(() => {});
  await page.selectOption("#f-model", model);
  await page.selectOption("#f-limit", "500");
  await page.click("form[role='search'] button[type='submit']");
  await page.waitForFunction((count) => document.querySelectorAll("[data-testid='sessions-table'] tbody tr[data-session-id]").length === count, ofModel.length).catch(() => {});
  const modelShown = await rowIds();
  check(`filtering by model ${model} shows the API's sessions of it`, ofModel.length > 0 && modelShown.length === ofModel.length && modelShown.every((id) => ofModel.includes(id)), `${modelShown.length} vs ${ofModel.length}`);

  // Usage: spend per agent app is one click, and its figures are the API's.
  await page.goto(config.base_url + "/#/usage");
  await loaded();
  await page.click("[data-testid='usage-group'] label:has(input[value='app'])");
  await page.waitForSelector("[data-testid='usage-table'] tr[data-key='claude_code']").catch(() => {});
  const byApp = (await api("/api/usage?group_by=app")).body;
  const appKeys = byApp.rows.map((row) => row.key).sort();
  check("Codex's responses, whose model the shipped prices do not know, count as unpriced", (byApp.rows.find((row) => row.key === "codex") || {}).unpriced_steps > 0, JSON.stringify(byApp.rows));
  check("usage by app has the three apps", JSON.stringify(appKeys) === JSON.stringify(["claude_code", "codex", "opencode"]), JSON.stringify(appKeys));
  for (const row of byApp.rows) {
    const tr = page.locator(`[data-testid='usage-table'] tr[data-key='${row.key}']`);
    const found = (await tr.count()) === 1;
    const label = found ? (await tr.locator("[data-field='key']").textContent()).trim() : "";
    const cost = found ? (await tr.locator("[data-field='cost']").textContent()).trim() : "";
    check(`usage by app shows ${row.key} as ${APP_NAMES[row.key]} with the API's cost`, label === APP_NAMES[row.key] && cost === costText(row.usage.cost, row.unpriced_steps), `${label} ${cost} vs ${row.usage.cost} (${row.unpriced_steps} unpriced)`);
  }
  check("the grouping is kept in the address", (await page.evaluate(() => location.hash)).includes("group_by=app"), await page.evaluate(() => location.hash));
  if (config.screenshots) await page.screenshot({ path: path.join(config.screenshots, "usage-by-app-light.png"), fullPage: true });

  // Session: the waterfall's totals are /api/traces'.
  await page.goto(config.base_url + "/#/session/" + config.root_session);
  await loaded();
  const trace = (await api("/api/traces/" + config.root_session)).body;
  const nodes = [];
  (function walk(node) {
    nodes.push(node);
    (node.children || []).forEach(walk);
  })(trace);
  check("the session has sub-agents to show", nodes.length > 1, `${nodes.length} nodes`);
  for (const node of nodes) {
    const row = page.locator(`[data-testid='waterfall'] [data-trace-id='${node.trace_id}']`).first();
    if ((await row.count()) === 0) {
      failures.push(`waterfall has no row for ${node.trace_id}`);
      continue;
    }
    const cumulative = (await row.locator("[data-field='cumulative-cost']").first().textContent()).trim();
    const own = (await row.locator("[data-field='cost']").first().textContent()).trim();
    check(`waterfall ${node.trace_id} cumulative cost`, cumulative === usd(node.cumulative.cost), `${cumulative} vs ${node.cumulative.cost}`);
    check(`waterfall ${node.trace_id} own cost`, own === usd(node.own.cost), `${own} vs ${node.own.cost}`);
  }
  if (config.screenshots) await page.screenshot({ path: path.join(config.screenshots, "session-light.png"), fullPage: true });

  // The other views render without errors.
  for (const view of ["usage", "spans", "system"]) {
    await page.goto(config.base_url + "/#/" + view);
    await loaded();
    if (config.screenshots) await page.screenshot({ path: path.join(config.screenshots, `${view}-light.png`), fullPage: true });
  }

  // Live: files copied into the watched tree show on the open page, without a reload.
  await page.goto(config.base_url + "/#/");
  await loaded();
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
  const before = await text("[data-testid='tokens-input']");
  copyTree(config.live_source, config.storage);
  const started = Date.now();
  let after = before;
  while (Date.now() - started < 5000 && after === before) {
    await page.waitForTimeout(100);
    after = await text("[data-testid='tokens-input']");
  }
  check("copied files show on the open page within 5 s", after !== before, `still ${before} after ${Date.now() - started} ms`);
  check("without a reload", await page.evaluate(() => window.__notReloaded === true), "the page reloaded");
  check("live status says live", (await text("[data-testid='live-status']")).startsWith("live"), await text("[data-testid='live-status']"));
  // The copy lands in several commits: wait (with a deadline) until the page and the API agree.
  let shownInput = "";
  let apiInput = "";
  const settling = Date.now();
  do {
    await page.waitForTimeout(100);
    apiInput = String((await api("/api/usage?group_by=day")).body.total.usage.input);
    shownInput = (await text("[data-testid='tokens-input']")).replace(/[^0-9]/g, "");
  } while (shownInput !== apiInput && Date.now() - settling < 15000);
  check("once the commits settle, tokens-input is the API's", shownInput === apiInput, `${shownInput} vs ${apiInput} after 15 s`);

  if (config.screenshots) {
    const dark = await browser.newContext({ colorScheme: "dark", viewport: { width: 1280, height: 900 }, storageState: await context.storageState() });
    const darkPage = await dark.newPage();
    for (const view of ["", "sessions", "session/" + config.root_session, "usage", "spans", "system"]) {
      await darkPage.goto(config.base_url + "/#/" + view);
      await darkPage.waitForSelector("main[data-loaded='true']", { timeout: 15000 });
      const name = (view.split("/")[0] || "overview") + "-dark.png";
      await darkPage.screenshot({ path: path.join(config.screenshots, name), fullPage: true });
    }
  }

  check("no console error", consoleErrors.length === 0, JSON.stringify(consoleErrors));
  check("no request to another origin", foreignRequests.length === 0, JSON.stringify(foreignRequests));
  check("no script ran from a title (no dialog)", dialogs.length === 0, JSON.stringify(dialogs));
  await browser.close();
}

main()
  .catch((error) => failures.push("driver: " + (error && error.stack ? error.stack : String(error))))
  .finally(() => {
    console.log(JSON.stringify({ checks, failures }));
    process.exit(failures.length === 0 ? 0 : 1);
  });
