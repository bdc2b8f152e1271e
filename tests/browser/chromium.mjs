// Debian's chromium through playwright-core (no browser download), in a
// fresh profile directory per test file, as Playwright wants for
// launchPersistentContext. One set of flags for every browser test.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/**
 * A headless chromium context in a fresh profile; `close()` ends it and
 * removes the profile. `extraArgs` are added to the flags every test uses.
 */
export async function launchChromium(name, extraArgs = []) {
  const profile = await mkdtemp(join(tmpdir(), `pushgate-chromium-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      ...extraArgs,
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}
