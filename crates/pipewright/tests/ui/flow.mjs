// The web UI in Debian's Chromium, as the people who use it go through it. Run by the Rust test
// crates/pipewright/tests/it/ui.rs against `pipewright demo`; prints one line per check and
// exits non-zero on the first failure. Environment: BASE, EMAIL, PASSWORD, VIEWER, VIEWER_PASSWORD,
// SHOTS (a folder for screenshots, optional).
import { chromium } from 'playwright-core';

const { BASE, EMAIL, PASSWORD, VIEWER, VIEWER_PASSWORD, SHOTS } = process.env;
const failures = [];
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'FAILED'} ${what}`);
  if (!ok) failures.push(what);
}
async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: false });
}
async function signIn(page, email, password) {
  await page.goto(`${BASE}/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${BASE}/`), page.click('button[type=submit]')]);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();

  // Signed out, every page sends the browser to sign in, and back to the page after.
  await page.goto(`${BASE}/pipeline`);
  check(page.url() === `${BASE}/login?next=%2Fpipeline`, 'a page needs a sign-in');
  await page.fill('#email', EMAIL);
  await page.fill('#password', 'not the password');
  await page.click('button[type=submit]');
  check((await page.textContent('.error')).includes('Wrong email or password'), 'a wrong password is refused');

  // The dashboard with the demo company.
  await signIn(page, EMAIL, PASSWORD);
  check((await page.textContent('h1')) === 'Heroics', 'signed in, the heroics dashboard');
  const bars = await page.locator('#chart rect').count();
  check(bars >= 6, `the chart has a bar per month (${bars})`);
  check(/\d+%/.test(await page.textContent('#won-share')), 'the share of won deals with a key person');
  check((await page.locator('#reasons tr').count()) > 2, 'the reasons key people stepped in');
  await shot(page, 'dashboard');

  // The pipeline needing attention, then a deal and its why-trace.
  await page.click('nav a[href="/pipeline"]');
  const rows = await page.locator('#pipeline tr').count();
  check(rows > 1, `deals at risk are listed (${rows - 1})`);
  check((await page.locator('#pipeline ul.reasons li').count()) > 0, 'each with its reasons in words');
  await shot(page, 'pipeline');
  await page.locator('#pipeline a[href^="/deals/"]').first().click();
  check(page.url().includes('/deals/D-'), 'a deal page opens');
  const why = page.locator('#timeline details.why').first();
  if ((await why.count()) > 0) {
    await why.locator('summary').click();
    const text = await why.textContent();
    check(text.includes('Triggered by'), 'an effect shows its why-trace');
  } else {
    // Not every deal at risk has had an effect: find one that has, in the outbox.
    await page.goto(`${BASE}/outbox`);
    await page.locator('#outbox a[href^="/deals/"]').first().click();
    const w = page.locator('#timeline details.why').first();
    await w.locator('summary').click();
    check((await w.textContent()).includes('Triggered by'), 'an effect shows its why-trace');
  }
  check((await page.locator('#timers li').count()) > 0, 'pending timers are listed');
  await shot(page, 'deal');

  // Walk the qualification call on the deal.
  const tree = page.locator('details.tree').first();
  await tree.locator('summary').click();
  await tree.locator('select[name=budget]').selectOption('Yes, approved');
  await tree.locator('input[name=champion]').fill('Dana Whitfield');
  await tree.locator('select[name=timeline]').selectOption('This quarter');
  check((await tree.locator('select').count()) >= 2, 'the tree asks its questions');
  await Promise.all([page.waitForLoadState('load'), tree.locator('button[type=submit]').click()]);
  check((await page.textContent('#tree-result')).includes('Recommended: Move the deal to proposal'), 'walking the tree recommends the next step');

  // Acknowledge an exception in the inbox (the demo's stalled legal reviews raise them).
  let acknowledged = false;
  for (let i = 0; i < 40 && !acknowledged; i++) {
    await page.goto(`${BASE}/inbox?all=1`);
    const ack = page.locator('#inbox button:has-text("Acknowledge")').first();
    if ((await ack.count()) > 0) {
      const before = await page.locator('#inbox .pill.open').count();
      await Promise.all([page.waitForURL(`${BASE}/inbox`), ack.click()]);
      await page.goto(`${BASE}/inbox?all=1`);
      const after = await page.locator('#inbox .pill.open').count();
      acknowledged = after === before - 1;
    } else {
      await page.waitForTimeout(500);
    }
  }
  check(acknowledged, 'an exception is acknowledged from the inbox');
  await shot(page, 'inbox');

  await page.goto(`${BASE}/playbooks`);
  check((await page.locator('table tr').count()) > 5, 'the playbooks list their rules');
  await shot(page, 'playbooks');
  await page.goto(`${BASE}/outbox`);
  check((await page.locator('#outbox tr').count()) > 1, 'the outbox lists effects');
  await shot(page, 'outbox');

  // A form without the session's token is refused.
  const forged = await page.request.post(`${BASE}/logout`, { form: { csrf: 'forged' }, maxRedirects: 0 });
  check(forged.status() === 403, `a form without the CSRF token is refused (${forged.status()})`);

  // Sign out.
  await page.goto(`${BASE}/`);
  await Promise.all([page.waitForURL(`${BASE}/login`), page.click('header button[type=submit]')]);
  await page.goto(`${BASE}/inbox`);
  check(page.url() === `${BASE}/login?next=%2Finbox`, 'signed out, the pages need a sign-in again');
  // Signing in from there (as from a link in an alert) opens the page asked for.
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}/inbox`), page.click('button[type=submit]')]);
  check((await page.textContent('h1')) === 'Exceptions inbox', 'signing in returns to the page asked for');

  // A viewer reads but cannot act.
  const viewer = await (await browser.newContext()).newPage();
  await signIn(viewer, VIEWER, VIEWER_PASSWORD);
  await viewer.goto(`${BASE}/inbox?all=1`);
  check((await viewer.locator('#inbox button:has-text("Acknowledge")').count()) === 0, 'a viewer sees no buttons to act');
  const csrf = await viewer.locator('header input[name=csrf]').getAttribute('value');
  const refused = await viewer.request.post(`${BASE}/inbox/any/acknowledge`, { form: { csrf }, maxRedirects: 0 });
  check(refused.status() === 403 && (await refused.text()).includes('may not act'), `a viewer cannot act (${refused.status()})`);
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('every check passed');
