// @ts-check
/*
 * The screenshots in docs/: the demo dashboard served by `test/run demo --ui`
 * (or dev/server.mjs), in Debian's chromium.
 *
 *   node dev/screenshots.mjs http://127.0.0.1:55041/ ../docs
 *
 * Then, to keep them small: pngquant --force --ext .png --quality 60-85 ../docs/ui-*.png
 */
import path from 'node:path';
import { launchBrowser } from '../test/browser/harness.mjs';

const [url, out] = process.argv.slice(2);
if (!url || !out) {
  console.error('usage: node dev/screenshots.mjs URL OUTDIR');
  process.exit(2);
}
const browser = await launchBrowser();
const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
await page.goto(url);
await page.locator('.icpml-recs li[data-account-id]').first().waitFor();
await page.locator('.icpml-intent svg[role="img"]').waitFor();
await page.locator('.icpml-model[data-version]').waitFor();
await page.locator('.icpml-recs .icpml-badge button').first().focus();
await page.screenshot({ path: path.join(out, 'ui-dashboard.png') });
await page.locator('.demo__admin').screenshot({ path: path.join(out, 'ui-model-report.png') });
await browser.close();
