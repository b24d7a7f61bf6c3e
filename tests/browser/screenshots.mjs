// node screenshots.mjs URL OUTDIR [ID]: the pages as a person sees them.
import { launch } from "./chromium.mjs";
const [url, out, id] = process.argv.slice(2);
const { context, close } = await launch();
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => console.error("console:", m.type(), m.text()));
  page.on("pageerror", (e) => console.error("pageerror:", e.message));
  await page.goto(url);
  await page.waitForSelector("#prows .prow");
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/processes.png`, fullPage: true });
  await page.goto(new URL("#/processes?tree=1&all=1", url).href);
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${out}/tree.png`, fullPage: true });
  const target = id || (await page.locator("#prows .prow").first().getAttribute("data-id"));
  await page.goto(new URL("#/p/" + target, url).href);
  await page.waitForSelector("#d-record dt");
  await page.waitForTimeout(2500);
  await page.screenshot({ path: `${out}/detail.png`, fullPage: true });
  await page.goto(new URL("#/system", url).href);
  await page.waitForSelector("#s-doctor [data-check]");
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${out}/system.png`, fullPage: true });
  await page.setViewportSize({ width: 420, height: 860 });
  await page.goto(new URL("#/processes", url).href);
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${out}/narrow.png` });
  await page.goto(new URL("#/p/" + target, url).href);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${out}/narrow-detail.png` });
} finally {
  await close();
}
