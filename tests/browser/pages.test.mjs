// The browser pages in a real headless Chromium against the real daemon on
// the real user manager (tests/run starts this inside its sandbox):
//   node --test tests/browser/
// Needs REFINE_PROC_BIN (the binary under test) and a reachable user
// manager. Without /usr/bin/chromium every test is reported as skipped.
// REFINE_BROWSER_SHOTS=DIR also saves screenshots of the pages there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { chromiumMissing, launch } from "./chromium.mjs";
import { startDaemon } from "./daemon.mjs";

const missing = chromiumMissing() || (process.env.REFINE_PROC_BIN ? null : "REFINE_PROC_BIN is not set (run through tests/run)");
const T = { timeout: 60_000, skip: missing || false };
const SHOTS = process.env.REFINE_BROWSER_SHOTS;

let daemon, browser, page;
const started = [];

function cli(...args) {
  return daemon.cli(...args);
}
function run(...args) {
  const rec = JSON.parse(cli("run", "--json", ...args));
  started.push(rec.id);
  return rec;
}
function systemd(unit, prop) {
  return execFileSync("systemctl", ["--user", "show", "-p", prop, "--value", unit], { encoding: "utf8" }).trim();
}
const row = (id) => page.locator(`#prows .prow[data-id="${id}"]`);
const rowState = (id) => row(id).locator(".c-state");

async function shot(name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

/** The Processes page, signed in, with its event stream open. */
async function openProcesses() {
  await page.goto(daemon.url("#/processes"));
  await page.locator("#conn.live").waitFor({ timeout: 10_000 });
}

before(async () => {
  if (missing) return;
  daemon = await startDaemon();
  ({ browser } = { browser: await launch() });
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => console.error("page error:", e.message));
  // The one-time code signs this browser in; every later page load has the cookie.
  await page.goto(daemon.signInUrl());
  await page.locator("#conn.live").waitFor({ timeout: 10_000 });
});

after(async () => {
  if (browser) await browser.close();
  if (daemon) {
    for (const id of started) {
      try { cli("stop", id); } catch (_) { /* already ended */ }
    }
    daemon.stop();
  }
});

test("the page shows a process started from the CLI within a second", T, async () => {
  await openProcesses();
  const rec = run("--label", "started-from-cli", "--", "sleep", "300");
  const t0 = performance.now();
  await row(rec.id).waitFor({ timeout: 1000 });
  const ms = performance.now() - t0;
  console.log(`row of ${rec.id} shown ${ms.toFixed(0)} ms after run returned`);
  assert.equal(await rowState(rec.id).textContent(), "running");
  assert.equal(await row(rec.id).locator(".c-label .lbl").textContent(), "started-from-cli");
});

test("pause, resume and stop from the page act on systemd", T, async () => {
  await openProcesses();
  const rec = run("--label", "acted-on-from-page", "--", "sleep", "300");
  await row(rec.id).waitFor({ timeout: 5000 });

  await row(rec.id).locator('button[data-action="pause"]').click();
  await page.waitForFunction((id) => document.querySelector(`.prow[data-id="${id}"] .c-state`)?.textContent === "paused", rec.id);
  assert.equal(systemd(rec.unit, "FreezerState"), "frozen");
  assert.equal(JSON.parse(cli("status", "--json", rec.id)).state, "paused");
  await shot("processes-paused");

  await row(rec.id).locator('button[data-action="resume"]').click();
  await page.waitForFunction((id) => document.querySelector(`.prow[data-id="${id}"] .c-state`)?.textContent === "running", rec.id);
  assert.equal(systemd(rec.unit, "FreezerState"), "running");
  assert.equal(JSON.parse(cli("status", "--json", rec.id)).state, "running");

  // Stopping asks first; cancelling leaves it running.
  await row(rec.id).locator('button[data-action="stop"]').click();
  await page.locator("#confirm[open]").waitFor();
  await page.locator('#confirm button[value="cancel"]').click();
  assert.equal(systemd(rec.unit, "ActiveState"), "active");
  await row(rec.id).locator('button[data-action="stop"]').click();
  await page.locator("#confirm-ok").click();
  // The list shows processes that have not ended: the stopped one leaves it.
  await row(rec.id).waitFor({ state: "detached", timeout: 10_000 });
  assert.notEqual(systemd(rec.unit, "ActiveState"), "active");
  assert.equal(JSON.parse(cli("status", "--json", rec.id)).state, "stopped");
});

test("the keyboard moves between rows and pauses the focused one", T, async () => {
  await openProcesses();
  const rec = run("--label", "paused-by-keyboard", "--", "sleep", "300");
  await row(rec.id).waitFor({ timeout: 5000 });
  await row(rec.id).focus();
  await page.keyboard.press("p");
  await page.waitForFunction((id) => document.querySelector(`.prow[data-id="${id}"] .c-state`)?.textContent === "paused", rec.id);
  assert.equal(systemd(rec.unit, "FreezerState"), "frozen");
  await page.keyboard.press("p");
  await page.waitForFunction((id) => document.querySelector(`.prow[data-id="${id}"] .c-state`)?.textContent === "running", rec.id);
  assert.equal(systemd(rec.unit, "FreezerState"), "running");
  await page.keyboard.press("Enter");
  await page.locator("#view-detail:not([hidden]) #d-record dt").first().waitFor();
  assert.match(await page.locator("#d-title").textContent(), new RegExp(rec.id));
});

test("the log view follows new lines", T, async () => {
  const fifo = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "refine-web-")), "next-line");
  execFileSync("mkfifo", [fifo]);
  // The process prints one line, then the line the test sends it, on demand.
  const rec = run("--label", "log-follower", "--", "sh", "-c", `echo first-line; read x < '${fifo}'; echo "$x"; sleep 300`);
  await page.goto(daemon.url("#/p/" + rec.id));
  const log = page.locator("#d-log");
  await log.getByText("first-line").waitFor({ timeout: 10_000 });
  const fresh = "line-sent-after-the-page-opened-" + process.pid;
  fs.writeFileSync(fifo, fresh + "\n");
  await log.getByText(fresh).waitFor({ timeout: 5000 });
  assert.equal(await log.getByText("first-line").count(), 1, "a line was repeated");
  await page.locator("#d-events").getByText("started").first().waitFor();
  await shot("detail");
});

test("the System page shows doctor's checks with their fixes", T, async () => {
  const doctor = JSON.parse(daemon.cliAllowFail("doctor", "--json"));
  await page.goto(daemon.url("#/system"));
  await page.locator("#s-doctor [data-check]").first().waitFor({ timeout: 10_000 });
  const shown = await page.$$eval("#s-doctor [data-check]", (els) =>
    els.map((e) => ({ name: e.dataset.check, status: e.querySelector(".state").textContent, fix: e.querySelector(".fix")?.textContent || null })));
  assert.deepEqual(shown.map((c) => c.name), doctor.checks.map((c) => c.name));
  for (const c of doctor.checks) {
    const s = shown.find((x) => x.name === c.name);
    // Checks that depend on time (the daemon's own) may move between reads.
    if (c.name !== "daemon") assert.equal(s.status, c.status, c.name);
    if (c.fix && c.name !== "daemon") assert.equal(s.fix, c.fix, c.name);
  }
  await shot("system");
});

test("a hostile label is shown as text, never run", T, async () => {
  await openProcesses();
  const label = `<img src=x onerror="window.__pwned=1">`;
  const rec = run("--label", label, "--", "sleep", "300");
  await row(rec.id).waitFor({ timeout: 5000 });
  assert.equal(await row(rec.id).locator(".c-label .lbl").textContent(), label);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await row(rec.id).locator("img").count(), 0);
});

test("without a session the page says how to get one", T, async () => {
  const other = await launch();
  try {
    const p = other.context.pages()[0] || (await other.context.newPage());
    await p.goto(daemon.url("#/processes"));
    await p.locator("#banner:not([hidden])").waitFor({ timeout: 10_000 });
    assert.match(await p.locator("#banner").textContent(), /refine-proc web/);
    assert.equal(await p.locator("#prows .prow").count(), 0);
  } finally {
    await other.close();
  }
});

test("narrow window: the list and the detail stay readable", T, async () => {
  for (let i = 0; i < 3; i++) run("--owner", "agent", "--label", "narrow-" + i, "--workflow", "wf-narrow", "--", "sleep", "300");
  await page.setViewportSize({ width: 400, height: 800 });
  try {
    await openProcesses();
    await page.locator("#prows .prow").nth(2).waitFor();
    // Nothing wider than the window: no sideways scrolling.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the list is ${overflow}px wider than a 400px window`);
    await shot("narrow");
    const id = await page.locator("#prows .prow").first().getAttribute("data-id");
    await page.goto(daemon.url("#/p/" + id));
    await page.locator("#d-record dt").first().waitFor();
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wide <= 0, `the detail is ${wide}px wider than a 400px window`);
    await shot("narrow-detail");
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
  await shot("processes");
});

test("the filters show what refine-proc list shows for them", T, async () => {
  run("--owner", "agent", "--label", "filtered-in", "--workflow", "wf-filter", "--session", "s-filter", "--", "sleep", "300");
  run("--owner", "agent", "--label", "other-workflow", "--workflow", "wf-other", "--", "sleep", "300");
  for (const [query, args] of [
    ["owner=agent", ["--owner", "agent"]],
    ["workflow=wf-filter", ["--workflow", "wf-filter"]],
    ["session=s-filter", ["--session", "s-filter"]],
    ["state=running&all=1", ["--state", "running", "--all"]],
  ]) {
    const want = JSON.parse(cli("list", "--json", ...args)).map((r) => r.id);
    await page.goto(daemon.url("#/processes?" + query));
    await page.waitForFunction((n) => document.querySelectorAll("#prows .prow").length === n && !document.querySelector("#empty:not([hidden])") === (n > 0), want.length);
    const shown = await page.$$eval("#prows .prow", (els) => els.map((e) => e.dataset.id));
    assert.deepEqual(shown.sort(), want.sort(), query);
  }
});

test("the tree shows a process under the one that launched it", T, async () => {
  const bin = process.env.REFINE_PROC_BIN;
  const parent = run("--label", "tree-parent", "--", "sh", "-c",
    `'${bin}' --state-dir '${daemon.state}' run --label tree-child -- sleep 300; sleep 300`);
  await page.goto(daemon.url("#/processes?tree=1"));
  const child = page.locator("#prows .prow").filter({ has: page.locator(".lbl", { hasText: /^tree-child$/ }) });
  await child.waitFor({ timeout: 10_000 });
  const childId = await child.getAttribute("data-id");
  started.push(childId);
  assert.equal(JSON.parse(cli("status", "--json", childId)).requested_by.parent, parent.id);
  // Right after its parent, indented.
  const order = await page.$$eval("#prows .prow", (els) => els.map((e) => e.dataset.id));
  assert.equal(order.indexOf(childId), order.indexOf(parent.id) + 1);
  assert.match(await child.locator(".tw").textContent(), /\u2514/);
  await shot("tree");
});

test("the pages run under their Content-Security-Policy without a violation", T, async () => {
  const other = await launch();
  try {
    const p = other.context.pages()[0] || (await other.context.newPage());
    await other.context.addInitScript(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
    });
    const res = await p.goto(daemon.signInUrl());
    const csp = res.headers()["content-security-policy"] || "";
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await p.locator("#conn.live").waitFor({ timeout: 10_000 });
    for (const [hash, ready] of [["#/processes?tree=1", "#conn.live"], ["#/system", "#s-doctor [data-check]"]]) {
      await p.goto(daemon.url(hash));
      await p.locator(ready).first().waitFor({ timeout: 10_000 });
      assert.deepEqual(await p.evaluate(() => window.__violations), [], hash);
    }
  } finally {
    await other.close();
  }
});

test("the terminal of a run --pty session shows its output, takes typed input and redraws after a reload", T, async () => {
  const rec = run("--pty", "--label", "pty-prompt", "--", "sh", "-c", "printf 'name? '; read x; echo got:$x; sleep 100");
  cli("screen", rec.id, "--wait-for", "name?", "--timeout", "20s");
  const other = await launch();
  try {
    const p = other.context.pages()[0] || (await other.context.newPage());
    await other.context.addInitScript(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
    });
    p.on("pageerror", (e) => console.error("page error:", e.message));
    await p.goto(daemon.signInUrl());
    await p.locator("#conn.live").waitFor({ timeout: 10_000 });
    const t0 = performance.now();
    await p.goto(daemon.url("#/p/" + rec.id));
    const rows = p.locator("#d-term .xterm-rows");
    // The screen first: the prompt was printed before the page connected.
    await rows.filter({ hasText: "name?" }).waitFor({ timeout: 10_000 });
    const drawn = performance.now() - t0;
    await p.locator("#d-termstate", { hasText: "live" }).waitFor({ timeout: 10_000 });
    // By keyboard: t focuses the terminal, then the keys are the program's.
    await p.locator("#d-record dt").first().click();
    await p.keyboard.press("t");
    await p.keyboard.type("web user");
    const t1 = performance.now();
    await p.keyboard.press("Enter");
    await rows.filter({ hasText: "got:web user" }).waitFor({ timeout: 10_000 });
    console.log(`terminal: the screen drawn ${drawn.toFixed(0)} ms after opening the page; Enter answered in ${(performance.now() - t1).toFixed(0)} ms`);
    assert.match(JSON.parse(cli("screen", "--json", rec.id)).lines.join("\n"), /got:web user/);
    // Ctrl-\ leaves the terminal; the page's keys work again.
    await p.keyboard.press("Control+Backslash");
    assert.equal(await p.evaluate(() => document.activeElement.id), "d-log");
    if (SHOTS) await p.screenshot({ path: path.join(SHOTS, "terminal.png"), fullPage: true });
    // A reload (a new connection) draws the screen again.
    await p.reload();
    await rows.filter({ hasText: "got:web user" }).waitFor({ timeout: 10_000 });
    assert.deepEqual(await p.evaluate(() => window.__violations), [], "CSP violations");
    // A pause (the session frozen) is said, and its resume.
    cli("pause", rec.id);
    await p.locator("#d-termstate", { hasText: "paused" }).waitFor({ timeout: 10_000 });
    cli("resume", rec.id);
    await p.locator("#d-termstate", { hasText: "live" }).waitFor({ timeout: 10_000 });
    // The program's end is said, and the view stays.
    cli("kill", rec.id);
    await p.locator("#d-termstate", { hasText: /ended/ }).waitFor({ timeout: 10_000 });
    assert.match(await rows.textContent(), /got:web user/);
  } finally {
    await other.close();
  }
});

// Regression: a view without the keyboard was never told the writer
// resized the session and kept drawing at its old size.
test("a terminal without the keyboard draws at the session's size when the writer resizes it", T, async () => {
  const rec = run("--pty", "--label", "pty-sized", "--", "sh", "-c", "echo sized-me; sleep 100");
  cli("screen", rec.id, "--wait-for", "sized-me", "--timeout", "20s");
  const writer = await launch();
  const watcher = await launch();
  const open = async (b) => {
    const p = b.context.pages()[0] || (await b.context.newPage());
    p.on("pageerror", (e) => console.error("page error:", e.message));
    await p.goto(daemon.signInUrl());
    await p.locator("#conn.live").waitFor({ timeout: 10_000 });
    await p.goto(daemon.url("#/p/" + rec.id));
    await p.locator("#d-term .xterm-rows").filter({ hasText: "sized-me" }).waitFor({ timeout: 10_000 });
    return p;
  };
  const size = (p) => p.evaluate(() => ({ rows: term.xt.rows, cols: term.xt.cols }));
  try {
    const a = await open(writer);
    await a.locator("#d-termstate", { hasText: "live" }).waitFor({ timeout: 10_000 });
    const b = await open(watcher);
    await b.locator("#d-termstate", { hasText: "watching" }).waitFor({ timeout: 10_000 });
    const before = await size(a);
    await b.waitForFunction((s) => term.xt.rows === s.rows && term.xt.cols === s.cols, before, { timeout: 10_000 });
    // The writer's window shrinks: the session follows its box, and the
    // watcher draws at the new size.
    await a.setViewportSize({ width: 640, height: 480 });
    await a.waitForFunction((s) => term.xt.cols !== s.cols || term.xt.rows !== s.rows, before, { timeout: 10_000 });
    const after = await size(a);
    await b.waitForFunction((s) => term.xt.rows === s.rows && term.xt.cols === s.cols, after, { timeout: 10_000 });
    const s = JSON.parse(cli("screen", "--json", rec.id));
    assert.deepEqual({ rows: s.rows, cols: s.cols }, after);
    await b.locator("#d-term .xterm-rows").filter({ hasText: "sized-me" }).waitFor({ timeout: 10_000 });
  } finally {
    await writer.close();
    await watcher.close();
  }
});

test("the terminal says read-only when the policy lets the person only watch, and their keys never reach the program", T, async () => {
  const rec = run("--pty", "--label", "pty-watched", "--", "sh", "-c", "echo watch-me; read x; echo got:$x; sleep 100");
  cli("screen", rec.id, "--wait-for", "watch-me", "--timeout", "20s");
  // The daemon reads the person's policy for every request: here a person
  // may act only on what it launched from a managed process (nothing).
  const policy = path.join(path.dirname(daemon.state), "policy.toml");
  fs.writeFileSync(policy, '[actors.person]\nact_on = "descendants"\n');
  try {
    await page.goto(daemon.url("#/p/" + rec.id));
    const rows = page.locator("#d-term .xterm-rows");
    await rows.filter({ hasText: "watch-me" }).waitFor({ timeout: 10_000 });
    await page.locator("#d-termstate", { hasText: "read-only" }).waitFor({ timeout: 10_000 });
    assert.match(await page.locator("#d-termstate").textContent(), /person may send input to only its own descendants/);
    assert.ok(await page.locator("#d-term.read-only").count(), "the terminal is marked read-only");
    await page.locator("#d-record dt").first().click();
    await page.keyboard.press("t");
    await page.keyboard.type("sneaky");
    await page.keyboard.press("Enter");
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, "terminal-read-only.png") });
    // Nothing was sent: the program still waits for its line.
    const screen = JSON.parse(cli("screen", "--json", rec.id)).lines.join("\n");
    assert.doesNotMatch(screen, /sneaky|got:/);
  } finally {
    fs.rmSync(policy, { force: true });
  }
});
