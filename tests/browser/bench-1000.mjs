// The Processes page with many processes, in headless Chromium against the
// real daemon (not part of tests/run: it starts N units). Inside a user
// manager, e.g. the test sandbox:
//   tests/sandbox/with-user-manager --user refine-test -- \
//     env REFINE_PROC_BIN=$PWD/target/debug/refine-proc TMPDIR=... node tests/browser/bench-1000.mjs [N]
// Prints one JSON object of milliseconds.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { launch, chromiumMissing } from "./chromium.mjs";
import { startDaemon } from "./daemon.mjs";

const N = Number(process.argv[2] || 1000);
const missing = chromiumMissing();
if (missing) {
  console.log(`skipped: ${missing}`);
  process.exit(0);
}
const run = promisify(execFile);
const daemon = await startDaemon();
const bin = process.env.REFINE_PROC_BIN;
const ids = [];
const browser = await launch();
try {
  // Four at a time: the machine is small.
  let next = 0;
  await Promise.all([0, 1, 2, 3].map(async () => {
    while (next < N) {
      const i = next++;
      const { stdout } = await run(bin, ["--state-dir", daemon.state, "run", "--json", "--owner", "agent",
        "--label", `job ${i}`, "--workflow", `wf-${i % 7}`, "--", "sleep", "3000"]);
      ids.push(JSON.parse(stdout).id);
    }
  }));
  const page = browser.context.pages()[0] || (await browser.context.newPage());
  const out = { processes: N };
  let t = performance.now();
  await page.goto(daemon.signInUrl());
  await page.waitForFunction((n) => document.querySelectorAll("#prows .prow").length >= n, N, { timeout: 60_000 });
  out.first_render_ms = Math.round(performance.now() - t);
  await page.locator("#conn.live").waitFor();
  out.list_fetch_ms = await page.evaluate(async () => {
    const t0 = performance.now();
    await (await fetch("/api/v1/processes")).json();
    return Math.round(performance.now() - t0);
  });
  Object.assign(out, await page.evaluate(() => {
    const recs = list.order.map((id) => list.rows.get(id).rec);
    const r = {};
    let t0 = performance.now();
    renderList(recs);
    r.rerender_unchanged_ms = Math.round(performance.now() - t0);
    const changed = recs.map((x) => ({ ...x, usage: { ...x.usage, cpu_usec: (x.usage?.cpu_usec || 0) + 1000 } }));
    t0 = performance.now();
    renderList(changed);
    r.rerender_all_cpu_changed_ms = Math.round(performance.now() - t0);
    return r;
  }));
  // A new process among N: from the CLI's return to its row.
  const { stdout } = await run(bin, ["--state-dir", daemon.state, "run", "--json", "--label", "the new one", "--", "sleep", "3000"]);
  const fresh = JSON.parse(stdout).id;
  ids.push(fresh);
  t = performance.now();
  await page.locator(`.prow[data-id="${fresh}"]`).waitFor();
  out.new_row_after_cli_run_ms = Math.round(performance.now() - t);
  // A pause from the page among N: from the click to the row saying so,
  // timed in the page (Playwright's own checks before a click excluded).
  await page.evaluate((id) => {
    window.__bench = {};
    const row = document.querySelector(`.prow[data-id="${id}"]`);
    row.addEventListener("click", () => { window.__bench.click = performance.now(); }, true);
    new MutationObserver(() => {
      if (row.querySelector(".c-state").textContent === "paused" && !window.__bench.shown) window.__bench.shown = performance.now();
    }).observe(row, { subtree: true, childList: true, characterData: true });
  }, fresh);
  await page.locator(`.prow[data-id="${fresh}"] button[data-action="pause"]`).click();
  await page.waitForFunction((id) => document.querySelector(`.prow[data-id="${id}"] .c-state`)?.textContent === "paused", fresh);
  out.pause_click_to_row_ms = await page.evaluate(() => Math.round(window.__bench.shown - window.__bench.click));
  // Of which the server's answer to the POST (freezing the unit).
  Object.assign(out, await page.evaluate((id) => {
    const last = (suffix) => Math.round(performance.getEntriesByType("resource").filter((e) => e.name.endsWith(suffix)).pop()?.duration ?? -1);
    return { pause_post_ms: last("/pause"), get_one_ms: last("/processes/" + id) };
  }, fresh));
  // The keyboard on a long list.
  await page.locator("#prows .prow").first().focus();
  t = performance.now();
  await page.keyboard.press("End");
  await page.waitForFunction(() => document.activeElement === document.querySelector("#prows .prow:last-child"));
  out.end_key_ms = Math.round(performance.now() - t);
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
  // One stop for all: `stop` takes many ids.
  for (let i = 0; i < ids.length; i += 200) {
    await run(bin, ["--state-dir", daemon.state, "stop", ...ids.slice(i, i + 200)]).catch(() => {});
  }
  daemon.stop();
}
