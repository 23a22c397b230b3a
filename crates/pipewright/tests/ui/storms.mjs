// Issue 23 in Debian's Chromium: the storm guard in the inbox. Run by crates/pipewright/tests/it/ui.rs
// against `pipewright demo` started with a storm limit of 3, so its first start holds the rules
// that would act on more of the pipeline at once. Environment as for flow.mjs.
import { chromium } from 'playwright-core';

const { BASE, EMAIL, PASSWORD, VIEWER, VIEWER_PASSWORD, SHOTS } = process.env;
const failures = [];
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'FAILED'} ${what}`);
  if (!ok) failures.push(what);
}
async function signIn(page, email, password) {
  await page.goto(`${BASE}/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${BASE}/`), page.click('button[type=submit]')]);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
try {
  // On a phone: the held rules are listed in the inbox, with what each would do.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await signIn(page, EMAIL, PASSWORD);
  await page.goto(`${BASE}/inbox`);
  const cards = page.locator('#storms .card.storm');
  const held = await cards.count();
  check(held >= 2, `rules held for approval are listed (${held})`);
  const first = await cards.first().textContent();
  check(/would act on \d+ records? (at once|within one hour)/.test(first), 'each says how many records it would act on at once');
  check(first.includes('over its limit of 3 within an hour'), 'and the limit it passed');
  check((await cards.first().locator('a[href^="/deals/"], div:has-text("For example")').count()) > 0, 'with records it would act on');
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  check(fits, 'the inbox fits a phone screen');
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/storms.png`, fullPage: true });

  // Approve the first: its effects go out, with a confirmation.
  const rule = (await cards.first().locator('strong').first().textContent()).trim();
  await Promise.all([page.waitForURL(/\/inbox\?decided=/), cards.first().locator('button:has-text("Approve")').click()]);
  const done = await page.textContent('#decided');
  check(done.includes(`${rule} approved`), `approving says so (${done.trim()})`);
  check((await page.locator('#storms strong', { hasText: rule }).count()) === 0, 'an approved rule is no longer held');

  // Discard the next one.
  const next = page.locator('#storms .card.storm').first();
  const other = (await next.locator('strong').first().textContent()).trim();
  await Promise.all([page.waitForURL(/\/inbox\?decided=/), next.locator('button:has-text("Discard")').click()]);
  check((await page.textContent('#decided')).includes(`${other} discarded`), 'discarding says so');

  // A viewer sees what is held but cannot decide.
  const viewer = await (await browser.newContext()).newPage();
  await signIn(viewer, VIEWER, VIEWER_PASSWORD);
  await viewer.goto(`${BASE}/inbox`);
  const left = await viewer.locator('#storms .card.storm').count();
  check(left === held - 2, `a viewer sees the rules still held (${left})`);
  check((await viewer.locator('#storms button').count()) === 0, 'a viewer has no buttons to decide');
  const csrf = await viewer.locator('header input[name=csrf]').getAttribute('value');
  const refused = await viewer.request.post(`${BASE}/storms/any/approve`, { form: { csrf }, maxRedirects: 0 });
  check(refused.status() === 403, `a viewer cannot decide (${refused.status()})`);
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('every check passed');
