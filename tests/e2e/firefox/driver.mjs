// One Debian firefox-esr, driven for the tests (tests/e2e/firefox_driver.py starts it).
//
// Playwright and Selenium drive only their own patched or downloaded Firefox builds; puppeteer-core
// drives a stock one over WebDriver BiDi and never downloads a browser. The tests are Python, so
// this script is the bridge: one JSON object a line on stdin, one answer a line on stdout.
//
//   argv[2]: {"executable": "/usr/bin/firefox-esr", "prefs": {...}}  (launch options)
//   first line out: {"ready": true, "version": "firefox/153.0"}
//   in:  {"id": 1, "op": "open", "url": "http://..."}           out: {"id": 1, "result": 1}
//        {"id": 2, "op": "evaluate", "page": 1, "js": "(arg) => ...", "arg": ...}
//        {"id": 3, "op": "wait", "page": 1, "js": "(arg) => ...", "arg": ..., "timeout": 30000}
//        {"id": 4, "op": "screenshot", "page": 1, "path": "/tmp/x.png"}
//        {"id": 5, "op": "close", "page": 1}
//   out on failure: {"id": n, "error": "what went wrong"}
//
// "evaluate" and "wait" take a function's source and one JSON argument, as Playwright's
// page.evaluate and page.wait_for_function do, so the Python helpers written for Chromium pages
// work on these too. The end of stdin closes the browser. Page console messages go to stderr.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const options = JSON.parse(process.argv[2] ?? "{}");
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: options.executable,
  headless: true,
  extraPrefsFirefox: options.prefs ?? {},
});

const pages = new Map();
let lastPage = 0;

const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const call = (js, arg) => `(${js})(${JSON.stringify(arg ?? null)})`;

function pageOf(request) {
  const page = pages.get(request.page);
  if (page === undefined) throw new Error(`no page ${request.page}`);
  return page;
}

async function open(url) {
  // Each page a window of its own: a background tab is hidden and all but stops rendering (2
  // animation frames a second), so its videos' frames go uncounted. The first page takes the
  // blank window the browser starts with.
  const [blank] = pages.size === 0 && lastPage === 0 ? await browser.pages() : [];
  const page = blank ?? (await browser.newPage({ type: "window" }));
  const id = ++lastPage;
  pages.set(id, page);
  page.on("console", (m) => process.stderr.write(`[page ${id}] ${m.type()}: ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page ${id}] error: ${e.message}\n`));
  if (url) await page.goto(url);
  return id;
}

const operations = {
  open: (request) => open(request.url),
  evaluate: (request) => pageOf(request).evaluate(call(request.js, request.arg)),
  async wait(request) {
    const handle = await pageOf(request).waitForFunction(call(request.js, request.arg), {
      timeout: request.timeout ?? 30_000,
      polling: 50,
    });
    return handle.jsonValue();
  },
  async screenshot(request) {
    await pageOf(request).screenshot({ path: request.path });
    return null;
  },
  async close(request) {
    await pageOf(request).close();
    pages.delete(request.page);
    return null;
  },
};

async function answer(line) {
  let request;
  try {
    request = JSON.parse(line);
    const operation = operations[request.op];
    if (operation === undefined) throw new Error(`unknown op ${request.op}`);
    send({ id: request.id, result: (await operation(request)) ?? null });
  } catch (error) {
    send({ id: request?.id ?? null, error: String(error?.message ?? error) });
  }
}

send({ ready: true, version: await browser.version() });
const input = createInterface({ input: process.stdin });
// One request at a time, in the order they came.
let done = Promise.resolve();
input.on("line", (line) => {
  done = done.then(() => answer(line));
});
input.on("close", () => {
  done = done.then(async () => {
    await browser.close().catch(() => {});
    process.exit(0);
  });
});
