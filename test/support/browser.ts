/**
 * A real browser for the console suites: Debian's Chromium (/usr/bin/chromium, or
 * SIGIL_TEST_CHROMIUM) driven by playwright-core through its executable path — nothing downloads a
 * browser. Without Chromium a browser suite is skipped (`describe.skipIf(!haveBrowser)`), unless
 * SIGIL_TEST_REQUIRE_BROWSER=1 (CI sets it): then it runs and fails at launch, saying why.
 */
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { ROOT } from "./home.js";

export const CHROMIUM = process.env.SIGIL_TEST_CHROMIUM || "/usr/bin/chromium";
const required = process.env.SIGIL_TEST_REQUIRE_BROWSER === "1";
const present = existsSync(CHROMIUM);

/** Whether browser suites run: Chromium is there, or it is required (and its absence fails them). */
export const haveBrowser = present || required;
/** A note for suite names when they are skipped. */
export const browserSkipNote = haveBrowser ? "" : ` — SKIPPED: no Chromium at ${CHROMIUM} (install Debian's chromium, or set SIGIL_TEST_CHROMIUM)`;

export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** Launches headless Chromium; fails with one clear sentence when it is missing or will not start. */
export async function launchBrowser(): Promise<Browser> {
  if (!present) throw new Error(`SIGIL_TEST_REQUIRE_BROWSER=1 but there is no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium).`);
  try {
    return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  } catch (err) {
    throw new Error(`Chromium at ${CHROMIUM} did not start: ${(err as Error).message.split("\n")[0]}`);
  }
}

/** A fresh context (its own cookies) with generous timeouts for a loaded machine. */
export async function newPage(browser: Browser, opts: { baseURL?: string } = {}): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ ...(opts.baseURL ? { baseURL: opts.baseURL } : {}), viewport: { width: 1200, height: 800 } });
  context.setDefaultTimeout(30_000);
  context.setDefaultNavigationTimeout(60_000);
  return { context, page: await context.newPage() };
}

/**
 * Where the console suites write their screenshots: a scratch folder, so a test run leaves the
 * checkout as it found it; `npm run screenshots` (SIGIL_TEST_SCREENSHOTS=1) writes the ones the
 * README shows, in docs/screenshots/.
 */
export const SCREENSHOTS = process.env.SIGIL_TEST_SCREENSHOTS === "1" ? path.join(ROOT, "docs", "screenshots") : path.join(os.tmpdir(), `sigil-screenshots-${process.pid}`);

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}
