// node tests/browser/screenshots.mjs DIR: the pages as a person sees them,
// with about 20 processes of several owners, in headless Chromium against
// the real daemon (inside a user manager, e.g. the test sandbox:
//   tests/sandbox/with-user-manager --user refine-test -- \
//     env REFINE_PROC_BIN=$PWD/target/debug/refine-proc TMPDIR=... node tests/browser/screenshots.mjs DIR
// Writes processes.png, tree.png, detail.png, system.png, narrow.png,
// narrow-detail.png and terminal.png (a run --pty session's terminal).
import path from "node:path";
import { launch, chromiumMissing } from "./chromium.mjs";
import { startDaemon } from "./daemon.mjs";

const out = process.argv[2];
if (!out) throw new Error("usage: screenshots.mjs DIR");
const missing = chromiumMissing();
if (missing) {
  console.log(`skipped: ${missing}`);
  process.exit(0);
}
const daemon = await startDaemon();
const bin = process.env.REFINE_PROC_BIN;
const ids = [];
const run = (...args) => {
  const rec = JSON.parse(daemon.cli("run", "--json", ...args));
  ids.push(rec.id);
  return rec;
};
const browser = await launch();
try {
  const ticker = "i=0; while :; do i=$((i+1)); echo \"shard line $i\"; sleep 0.5; done";
  for (let i = 1; i <= 6; i++) run("--owner", "agent", "--label", `test shard ${i}`, "--workflow", "wf-42", "--session", "s1", "--gap", String(i), "--", "sh", "-c", ticker);
  for (let i = 1; i <= 3; i++) run("--owner", "agent", "--label", `lint ${i}`, "--workflow", "wf-43", "--session", "s2", "--", "sleep", "900");
  run("--owner", "target-app", "--label", "dev server", "--health-cmd", "true", "--health-interval", "1s", "--", "sh", "-c", "echo listening on :8080; sleep 1000");
  run("--owner", "target-app", "--label", "db <script>alert(1)</script>", "--", "sleep", "1000");
  for (let i = 1; i <= 3; i++) run("--label", `build ${i}`, "--", "sh", "-c", `echo building; exit ${i - 1}`);
  run("--label", "agent runner", "--", "sh", "-c", `'${bin}' --state-dir '${daemon.state}' run --label 'spawned by runner' -- sleep 900; sleep 900`);
  for (let i = 1; i <= 3; i++) run("--owner", "agent", "--label", `idle ${i}`, "--workflow", "wf-44", "--", "sleep", "1200");
  const shell = run("--pty", "--label", "interactive shell", "--", "sh", "-c",
    "printf '\\033[1;32mready\\033[0m> '; while read l; do printf 'you said \\033[33m%s\\033[0m\\n> ' \"$l\"; done");
  const paused = run("--owner", "agent", "--label", "paused job", "--", "sleep", "1000");
  daemon.cli("pause", paused.id);
  const page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(daemon.signInUrl());
  await page.locator("#conn.live").waitFor();
  await page.waitForTimeout(2000); // ages, health and the runner's child settle
  await page.goto(daemon.url("#/processes?all=1"));
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(out, "processes.png"), fullPage: true });
  await page.goto(daemon.url("#/processes?tree=1"));
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(out, "tree.png"), fullPage: true });
  await page.goto(daemon.url("#/p/" + ids[0]));
  await page.locator("#d-log div").nth(4).waitFor();
  await page.screenshot({ path: path.join(out, "detail.png"), fullPage: true });
  await page.goto(daemon.url("#/system"));
  await page.locator("#s-doctor [data-check]").first().waitFor();
  await page.screenshot({ path: path.join(out, "system.png"), fullPage: true });
  await page.goto(daemon.url("#/p/" + shell.id));
  await page.locator("#d-term .xterm-rows", { hasText: "ready" }).waitFor();
  await page.keyboard.press("t");
  await page.keyboard.type("hello from the page");
  await page.keyboard.press("Enter");
  await page.locator("#d-term .xterm-rows", { hasText: "you said hello" }).waitFor();
  await page.locator("#d-terminal").scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(out, "terminal.png") });
  await page.setViewportSize({ width: 400, height: 820 });
  await page.goto(daemon.url("#/processes"));
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(out, "narrow.png") });
  await page.goto(daemon.url("#/p/" + ids[9]));
  await page.locator("#d-record dt").first().waitFor();
  await page.screenshot({ path: path.join(out, "narrow-detail.png") });
} finally {
  await browser.close();
  try { daemon.cli("stop", ...ids); } catch (_) { /* some have ended */ }
  const child = JSON.parse(daemon.cli("list", "--json")).map((r) => r.id);
  if (child.length) try { daemon.cli("stop", ...child); } catch (_) { /* ended */ }
  daemon.stop();
}
