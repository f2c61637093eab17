// Drives Debian's headless Chromium through the browser viewer for tests/tests/web.rs.
//
// Usage: node viewer.mjs STEPS.json
// STEPS.json: {"base": "http://127.0.0.1:PORT/", "steps": [
//   {"path": "?run=x&view=overview", "expect": "text in the title", "screenshot": "FILE.png"},
//   {"append": {"file": "PATH", "text": "..."}, "expect": "…"}   (same page, after writing a file)
//   {"click": [x, y], "expect": "…"}                              (same page, after a click)
// ]}
// Each step waits until the page title (the viewer's status line) contains `expect`. Prints
// one JSON line per step ({"title", "screenshot"}) and a final {"errors": [...]} with every
// console error, page error, failed request and HTTP error response seen.
import { readFileSync, appendFileSync } from "node:fs";
import { chromium } from "playwright-core";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The closed network refuses Chromium's background connections; SwiftShader gives WebGL2.
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e}`));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  for (const step of spec.steps) {
    if (step.path !== undefined) {
      await page.goto(new URL(step.path, spec.base).href);
    }
    if (step.append) {
      appendFileSync(step.append.file, step.append.text);
    }
    if (step.click) {
      await page.mouse.click(step.click[0], step.click[1]);
    }
    try {
      await page.waitForFunction((want) => document.title.includes(want), step.expect, { timeout: 120_000 });
    } catch (e) {
      throw new Error(`the title never contained "${step.expect}"; it is "${await page.title()}"`);
    }
    if (step.screenshot) {
      // Two animation frames: the frame after the last load has been painted.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      await page.screenshot({ path: step.screenshot });
    }
    console.log(JSON.stringify({ title: await page.title(), screenshot: step.screenshot ?? null }));
  }
} finally {
  console.log(JSON.stringify({ errors }));
  await browser.close();
}
