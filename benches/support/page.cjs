// Cold page loads of the dashboard in Debian's Chromium (headless, through playwright-core), for
// benches/page.rs. One argument: a JSON object with base_url, chromium, playwright (the
// playwright-core folder), views (a list of {name, hash, ready}: the route after `/#`, and a CSS
// selector that must exist besides `main[data-loaded]`) and loads (cold loads per view).
// Each load is a new browser context: no cache, no cookies. Prints one JSON line:
// {views: [{name, ms: [...], bytes: [...], requests: [...], foreign: [...], errors: [...],
// largest: [{url, bytes}] (the last load's four largest requests)}]}.
"use strict";

const config = JSON.parse(process.argv[2]);
const { chromium } = require(config.playwright);

// Runs in the page before its scripts: notes the moment <main> is marked loaded and the view's
// selector exists, on the page's own clock (from the navigation's start).
function watchCompletion(ready) {
  const done = () => document.querySelector("main[data-loaded='true']") && (!ready || document.querySelector(ready));
  const observer = new MutationObserver(() => {
    if (window.__completeAt === undefined && done()) {
      window.__completeAt = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true });
}

async function coldLoad(browser, view) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const origin = new URL(config.base_url).origin;
  const responses = [];
  const foreign = [];
  const errors = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) foreign.push(url);
  });
  page.on("requestfinished", (request) => responses.push(request));
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  await page.addInitScript(watchCompletion, view.ready || null);
  await page.goto(config.base_url + "/#" + view.hash);
  await page.waitForFunction(() => window.__completeAt !== undefined, null, { timeout: 60000, polling: 50 });
  const ms = await page.evaluate(() => window.__completeAt);
  // What crossed the wire for the requests that finished: headers and (encoded) bodies. The
  // event stream never finishes and is left out.
  let bytes = 0;
  const largest = [];
  for (const request of responses) {
    const sizes = await request.sizes();
    const size = sizes.requestHeadersSize + sizes.requestBodySize + sizes.responseHeadersSize + sizes.responseBodySize;
    bytes += size;
    largest.push({ url: request.url().slice(origin.length), bytes: size });
  }
  largest.sort((a, b) => b.bytes - a.bytes);
  await context.close();
  return { ms, bytes, requests: responses.length, foreign: foreign.length, errors, largest: largest.slice(0, 4) };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: config.chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const report = { views: [] };
  try {
    // One load first, not counted: the browser's own first start-up (its caches on disk).
    await coldLoad(browser, config.views[0]);
    for (const view of config.views) {
      const row = { name: view.name, ms: [], bytes: [], requests: [], foreign: [], errors: [], largest: [] };
      for (let i = 0; i < config.loads; i++) {
        const load = await coldLoad(browser, view);
        row.ms.push(load.ms);
        row.bytes.push(load.bytes);
        row.requests.push(load.requests);
        row.foreign.push(load.foreign);
        row.errors.push(...load.errors);
        row.largest = load.largest;
      }
      report.views.push(row);
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
