// The web page in a real browser (Debian's chromium through playwright-core):
// starts `imago serve` (port 0, the demo model at max_side 128, a search
// token and an admin token), opens the page and checks, as a person would:
// the model line and the demo-model note; the search token prompt; an
// ingest job started from the admin view whose progress bar reaches 100%;
// a photo uploaded through the file input finds itself first with k
// thumbnails in the grid; a query box drawn with the mouse maps to image
// pixels and is searched; a text file shows the API's error message; the
// busy message; the keyboard path to the file picker; the narrow layout.
// Screenshots go to <build>/browser-screenshots/.
//
// usage: node test_web.mjs path/to/imago        (prints TAP; exit 0, 1, or 77)
// env: IMAGO_SHARED (photos in $IMAGO_SHARED/data/photos), IMAGO_BUILD_ROOT,
//      IMAGO_SOURCE_ROOT, IMAGO_CHROMIUM (default /usr/bin/chromium)

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SKIP = 77;
const ADMIN = 'browser-admin-token';
const SEARCH = 'browser-search-token';
const K = 8;

let n = 0;
let failed = 0;
function ok(cond, name, diag) {
  n++;
  if (!cond) failed++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
  if (!cond && diag !== undefined) {
    for (const line of String(diag).split('\n')) console.log('#   ' + line);
  }
  return cond;
}
function skip(name, why) {
  n++;
  console.log(`ok ${n} - ${name} # SKIP ${why}`);
}
function diag(msg) {
  for (const line of String(msg).split('\n')) console.log('# ' + line);
}

const imago = process.argv[2];
if (!imago || !fs.existsSync(imago)) {
  console.log(`1..0 # SKIP no imago binary given (${imago})`);
  process.exit(SKIP);
}
const chromiumPath = process.env.IMAGO_CHROMIUM || '/usr/bin/chromium';
const shared = process.env.IMAGO_SHARED || path.resolve(here, '../../../shared');
const photosDir = path.join(shared, 'data', 'photos');
const buildRoot = process.env.IMAGO_BUILD_ROOT || os.tmpdir();
const shots = path.join(buildRoot, 'browser-screenshots');
const sourceRoot = process.env.IMAGO_SOURCE_ROOT || path.resolve(here, '../..');

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.log(`1..0 # SKIP playwright-core cannot be loaded (run tests/browser/setup.sh): ${e.message}`);
  process.exit(SKIP);
}
if (!fs.existsSync(chromiumPath)) {
  console.log(`1..0 # SKIP ${chromiumPath} is missing (run tests/browser/setup.sh)`);
  process.exit(SKIP);
}
const photos = fs.existsSync(photosDir)
  ? fs.readdirSync(photosDir).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort()
  : [];
if (photos.length < K + 2) {
  console.log(`1..0 # SKIP the shared photos are missing (${photosDir})`);
  process.exit(SKIP);
}

/* ---- the server ------------------------------------------------------------ */

/* ingest root: photos/ (copies of the shared photos) and bad/ (two files
 * that are not valid images: the job's per-item errors) */
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imago-browser-'));
const root = path.join(tmp, 'root');
const ingestRoot = path.join(root, 'photos');
const badDir = path.join(root, 'bad');
fs.mkdirSync(ingestRoot, { recursive: true });
fs.mkdirSync(badDir);
for (const f of photos) fs.copyFileSync(path.join(photosDir, f), path.join(ingestRoot, f));
const badFiles = ['img_corrupt.jpg', 'img_truncated.png'];
for (const f of badFiles) fs.copyFileSync(path.join(sourceRoot, 'tests', 'data', f), path.join(badDir, f));
fs.mkdirSync(shots, { recursive: true });

let server = null;
let browser = null;
let log = '';

function cleanup() {
  if (server && server.exitCode === null) server.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);

function startServer() {
  const args = ['serve', '--port', '0', '--server.listen', '127.0.0.1',
    '--index.data-dir', path.join(tmp, 'data'), '--server.threads', '2',
    '--engine.demo-arch', 'resnet50-gem', '--engine.max-side', '128', '--engine.scales', '1',
    '--auth.admin-token', ADMIN, '--auth.search-token', SEARCH,
    '--ingest.roots', root];
  server = spawn(imago, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, IMAGO_SERVER_LOG_FORMAT: 'text' },
  });
  server.stderr.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no port in the log after 60 s:\n' + log)), 60000);
    server.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    server.on('exit', (code) => { clearTimeout(timer); reject(new Error(`imago exited ${code}:\n${log}`)); });
  });
}

async function waitReady(base) {
  const deadline = Date.now() + 180000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await fetch(base + '/readyz');
      last = await r.text();
      if (r.status === 200) return JSON.parse(last);
      if (/failed/.test(last)) break;
    } catch (e) { last = e.message; }
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('not ready: ' + last);
}

function sha256(file) {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/* ---- the test ----------------------------------------------------------------- */

async function main() {
  const port = await startServer();
  const base = `http://127.0.0.1:${port}`;
  ok(port > 0, `imago serve listening on port ${port}`);
  const ready = await waitReady(base);
  /* the page's index-dependent parts need the index wired into the server */
  const indexReady = ready.index === 'ready';
  const whyNoIndex = `the index is not wired into this server (/readyz index: "${ready.index}")`;

  /* a persistent context on a fresh, empty profile directory: the
   * user-data-dir of this run only */
  let context;
  try {
    context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
      executablePath: chromiumPath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1280, height: 860 },
    });
  } catch (e) {
    console.log(`1..0 # SKIP chromium cannot start: ${e.message.split('\n')[0]}`);
    process.exit(SKIP);
  }
  browser = context;
  const page = context.pages()[0] || await context.newPage();
  const choosers = [];
  page.on('filechooser', (c) => choosers.push(c));
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push('pageerror: ' + e.message));

  /* -- the page, the model line, the demo note -- */
  const resp = await page.goto(base + '/');
  ok(resp.status() === 200, 'GET / -> 200');
  ok((resp.headers()['content-type'] || '').startsWith('text/html'), 'served as text/html');
  await page.waitForFunction(() => !/Connecting/.test(document.getElementById('model-line').textContent));
  const info = await (await fetch(base + '/v1/info')).json();
  const modelLine = await page.textContent('#model-line');
  ok(modelLine.includes(info.model.name) && modelLine.includes(String(info.model.dim) + '-d') &&
     modelLine.includes(info.backend.name), 'model line shows name, dim and backend', modelLine);
  const demoVisible = await page.isVisible('#demo-note');
  ok(demoVisible === (info.model.demo === true), `demo-model note visible (demo=${info.model.demo})`);
  if (demoVisible) {
    const warning = info.model.warning.replace(/^demo model:\s*/i, '').toLowerCase();
    ok((await page.textContent('#demo-note')).toLowerCase().includes(warning),
      'demo note shows the server\'s warning', await page.textContent('#demo-note'));
  }
  await page.screenshot({ path: path.join(shots, '1-start.png') });

  /* -- keyboard: Enter and Space on the focused drop zone open the file
   * chooser, another key does not (the listener set at the start keeps
   * chooser interception on, so no press races its enabling) -- */
  for (const key of ['Enter', 'Space', 'a']) {
    await page.focus('#drop');
    const before = choosers.length;
    await page.keyboard.press(key);
    const t0 = Date.now();
    while (choosers.length === before && Date.now() - t0 < (key === 'a' ? 700 : 10000)) {
      await page.waitForTimeout(50);
    }
    const opened = choosers.length - before;
    ok(opened === (key === 'a' ? 0 : 1),
      `${key} on the focused drop zone ${key === 'a' ? 'does not open' : 'opens'} the file chooser (${opened})`);
  }
  const labelled = await page.evaluate(() => ['k', 'qe', 'bbox', 'search-token', 'admin-token', 'job-dir']
    .filter((id) => !document.querySelector(`label[for="${id}"]`)));
  ok(labelled.length === 0, 'every input has a label', labelled.join(', '));

  /* -- a text file: the API's error message -- */
  const textFile = path.join(sourceRoot, 'tests', 'data', 'img_text.txt');
  let [apiErr] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/search')),
    page.setInputFiles('#file', textFile),
  ]);
  /* the search token is configured: the first search is refused and the
   * page asks for the token */
  ok(apiErr.status() === 401, `search without a token -> 401 (got ${apiErr.status()})`);
  ok(await page.waitForSelector('#search-token', { state: 'visible', timeout: 5000 }).then(() => true, () => false),
    'the page asks for the search token');
  await page.waitForSelector('#search-status.error');
  ok((await page.textContent('#search-status')).includes('needs a search token'),
    'the status says a search token is needed', await page.textContent('#search-status'));
  await page.fill('#search-token', SEARCH);
  await page.dispatchEvent('#search-token', 'change');
  [apiErr] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/search')),
    page.click('#search-btn'),
  ]);
  const errBody = await apiErr.json().catch(() => null);
  ok(apiErr.status() === 415 && errBody && errBody.error.code === 'unsupported_media_type',
    `text file -> 415 unsupported_media_type (got ${apiErr.status()})`, JSON.stringify(errBody));
  await page.waitForSelector('#search-status.error');
  const shown = await page.textContent('#search-status');
  ok(errBody && shown.includes(errBody.error.message), 'the page shows the API\'s message',
    `shown: ${shown}\napi: ${errBody && errBody.error.message}`);
  ok(await page.isVisible('.no-preview'), 'no preview for a text file');
  /* a corrupt JPEG: 400 invalid_image from the decoder, its message shown */
  const [bad] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/search')),
    page.setInputFiles('#file', path.join(sourceRoot, 'tests', 'data', 'img_corrupt.jpg')),
  ]);
  const badBody = await bad.json().catch(() => null);
  await page.waitForSelector('#search-status.error');
  ok(bad.status() === 400 && badBody && badBody.error.code === 'invalid_image' &&
     (await page.textContent('#search-status')).includes(badBody.error.message),
    `corrupt JPEG -> 400 invalid_image, message shown (${badBody && badBody.error.message})`);
  await page.screenshot({ path: path.join(shots, '2-error.png') });

  /* -- busy: the page's message for 503 busy (the answer is staged with
   * page.route: a real overload is not reproducible here) -- */
  await page.route('**/v1/search', (route) => route.fulfill({
    status: 503, headers: { 'Retry-After': '2', 'Content-Type': 'application/json' },
    body: JSON.stringify({ error: { code: 'busy', message: 'the queue is full' } }),
  }));
  await Promise.all([page.waitForResponse((r) => r.url().endsWith('/v1/search')), page.click('#search-btn')]);
  await page.waitForSelector('#search-status.error');
  const busy = await page.textContent('#search-status');
  ok(/busy, retry in 2 s/i.test(busy), 'busy 503 -> "busy, retry" message', busy);
  await page.unroute('**/v1/search');

  /* -- admin view: token, a job from a server folder, progress to 100% -- */
  await page.click('#tab-admin');
  ok(await page.isVisible('#job-form') && !(await page.isVisible('#grid')), 'admin tab shows the admin view');
  await page.fill('#job-dir', ingestRoot);
  await page.click('#job-start');
  await page.waitForSelector('#admin-status.error');
  ok((await page.textContent('#admin-status')).includes('admin token'), 'starting a job asks for the admin token first');
  await page.fill('#admin-token', ADMIN);
  await page.click('#admin-token-form button[type="submit"]');
  ok(await page.evaluate(() => sessionStorage.getItem('imago.adminToken')) === ADMIN,
    'admin token kept in sessionStorage');

  let jobId = null;
  if (!indexReady) {
    skip('ingest job reaches 100% in the admin view', whyNoIndex);
  } else {
    const t0 = Date.now();
    const [created] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/v1/admin/jobs') && r.request().method() === 'POST'),
      page.click('#job-start'),
    ]);
    ok(created.status() === 202, `POST /v1/admin/jobs -> 202 (got ${created.status()})`);
    jobId = (await created.json().catch(() => ({}))).job_id;
    const card = `#jobs li[data-id="${jobId}"]`;
    await page.waitForSelector(card);
    let sawRunning = false;
    const deadline = Date.now() + 240000; /* generous: CI machines may be loaded */
    let state = '';
    while (Date.now() < deadline) {
      state = await page.getAttribute(card, 'data-state');
      if (state === 'running') sawRunning = true;
      if (state === 'done' || state === 'failed' || state === 'cancelled') break;
      await page.waitForTimeout(100);
    }
    diag(`job ${jobId}: ${state} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    ok(state === 'done', `job ${jobId} ends done (got ${state})`, await page.textContent(card));
    const bar = await page.$eval(`${card} progress`, (p) => ({ value: p.value, max: p.max }));
    ok(bar.max === photos.length && bar.value === bar.max,
      `progress bar full: ${bar.value} / ${bar.max} (want ${photos.length})`);
    const nums = await page.textContent(`${card} .nums`);
    ok(nums.startsWith('100%') && nums.includes('0 failed'), 'progress text 100%, 0 failed', nums);
    diag(`saw the job running before done: ${sawRunning}`);
    ok(!(await page.isVisible(`${card} .cancel`)), 'no cancel button on a finished job');
    await page.screenshot({ path: path.join(shots, '3-admin-job.png') });

    /* a folder outside ingest.roots: the API's refusal shows */
    await page.fill('#job-dir', '/etc');
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/v1/admin/jobs') && r.request().method() === 'POST'),
      page.click('#job-start'),
    ]);
    const refusedBody = await refused.json().catch(() => null);
    await page.waitForSelector('#admin-status.error');
    ok(refused.status() >= 400 && refusedBody &&
       (await page.textContent('#admin-status')).includes(refusedBody.error.message),
      `a folder outside ingest.roots -> ${refused.status()}, message shown`, await page.textContent('#admin-status'));

    /* a folder of broken files: the job lists its per-item errors */
    await page.fill('#job-dir', badDir);
    const [created2] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/v1/admin/jobs') && r.request().method() === 'POST'),
      page.click('#job-start'),
    ]);
    const badId = (await created2.json().catch(() => ({}))).job_id;
    const badCard = `#jobs li[data-id="${badId}"]`;
    await page.waitForFunction((sel) => {
      const li = document.querySelector(sel);
      return li && !['queued', 'running'].includes(li.dataset.state);
    }, badCard, { timeout: 60000 }).catch(() => null);
    const badState = await page.getAttribute(badCard, 'data-state');
    const errItems = await page.$$eval(`${badCard} .errors li`, (ls) => ls.map((l) => l.textContent));
    ok(errItems.length === badFiles.length && badFiles.every((f) => errItems.some((t) => t.includes(f))),
      `job ${badId} (${badState}) lists an error for each broken file`, errItems.join('\n'));
    ok((await page.textContent(`${badCard} .nums`)).includes(`${badFiles.length} failed`),
      `job ${badId} shows ${badFiles.length} failed`, await page.textContent(`${badCard} .nums`));
    ok(errItems.every((t) => /\((invalid_image|unsupported_media_type)\)/.test(t)),
      'each error shows the API error code');

    /* a fresh load of the admin view lists the recent jobs (newest first) */
    await page.reload();
    await page.waitForSelector(`#jobs li[data-id="${badId}"] .state:not(:empty)`);
    const listed = await page.$$eval('#jobs li.job', (ls) => ls.map((l) => Number(l.dataset.id)));
    ok(listed[0] === badId && listed.includes(jobId), `after a reload the admin view lists jobs ${listed.join(', ')}`);
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length > 0, `${badCard} .errors li code`,
      { timeout: 10000 }).catch(() => null);
    const errAgain = await page.$$eval(`${badCard} .errors li`, (ls) => ls.map((l) => l.textContent));
    ok(badFiles.every((f) => errAgain.some((t) => t.includes(f))), 'after a reload the errors are listed too',
      errAgain.join('\n'));
    await page.screenshot({ path: path.join(shots, '3b-admin-jobs.png') });
  }

  /* -- search with a photo through the file input -- */
  await page.click('#tab-search');
  await page.fill('#k', String(K));
  const query = photos.find((f) => /\.jpe?g$/i.test(f));
  const queryPath = path.join(ingestRoot, query);
  if (!indexReady) {
    skip(`photo ${query} finds itself first with ${K} thumbnails`, whyNoIndex);
    skip('query box drawn with the mouse is searched', whyNoIndex);
  } else {
    const [sr] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/v1/search')),
      page.setInputFiles('#file', queryPath),
    ]);
    const body = await sr.json().catch(() => null);
    ok(sr.status() === 200 && body && body.results.length === K,
      `search -> 200 with ${K} results (got ${sr.status()}, ${body && body.results ? body.results.length : '-'})`);
    await page.waitForFunction((k) => document.querySelectorAll('#grid li').length === k, K);
    /* every thumbnail loaded (fetched with the search token) */
    await page.waitForFunction(() => [...document.querySelectorAll('#grid img.thumb')]
      .every((i) => i.complete && i.naturalWidth > 0), null, { timeout: 30000 }).catch(() => null);
    const thumbs = await page.$$eval('#grid img.thumb', (is) => is.map((i) => i.naturalWidth));
    ok(thumbs.length === K && thumbs.every((w) => w > 0), `grid shows ${K} loaded thumbnails`, thumbs.join(','));
    const first = body.results[0];
    const rec = await (await fetch(`${base}/v1/images/${first.id}`, { headers: { Authorization: 'Bearer ' + SEARCH } })).json();
    /* jobs name an image by its path relative to its ingest root */
    const queryExt = path.relative(root, queryPath);
    ok(rec.sha256 === sha256(queryPath) && first.external_id === queryExt,
      `first hit is the query photo (${first.external_id}, score ${first.score.toFixed(4)})`,
      JSON.stringify(rec));
    ok(first.score > 0.99, `its score is ~1 (${first.score})`);
    const firstCard = await page.textContent('#grid li:first-child .ext');
    const firstTitle = await page.getAttribute('#grid li:first-child .ext', 'title');
    ok(firstCard === query && firstTitle === queryExt, `first card names it (${firstCard}, title ${firstTitle})`);
    await page.screenshot({ path: path.join(shots, '4-results.png') });

    /* details on click */
    await page.click('#grid li:first-child button');
    await page.waitForSelector('#hit-dialog[open]');
    const fields = await page.textContent('#hit-fields');
    ok(fields.includes(String(first.id)) && fields.includes(queryExt), 'clicking a hit shows its id and external id');
    await page.keyboard.press('Escape');
    ok(await page.waitForSelector('#hit-dialog[open]', { state: 'detached', timeout: 5000 }).then(() => true, () => false),
      'Escape closes the details');

    /* draw a box from 25%/25% to 75%/75% of the shown image */
    const natural = await page.$eval('#preview-img', (i) => [i.naturalWidth, i.naturalHeight]);
    const r = await page.$eval('#preview-img', (i) => { const b = i.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; });
    const want = [natural[0] * 0.25, natural[1] * 0.25, natural[0] * 0.75, natural[1] * 0.75].map(Math.round);
    /* what the page puts in the multipart body (chromium does not expose
     * multipart bodies with files to the driver) */
    await page.evaluate(() => {
      const append = FormData.prototype.append;
      FormData.prototype.append = function (name, value, ...rest) {
        if (name === 'bbox') window.__sentBbox = String(value);
        return append.call(this, name, value, ...rest);
      };
    });
    await page.mouse.move(r[0] + r[2] * 0.25, r[1] + r[3] * 0.25);
    await page.mouse.down();
    await page.mouse.move(r[0] + r[2] * 0.5, r[1] + r[3] * 0.5, { steps: 4 });
    await page.mouse.move(r[0] + r[2] * 0.75, r[1] + r[3] * 0.75, { steps: 4 });
    const [br] = await Promise.all([
      page.waitForResponse((x) => x.url().endsWith('/v1/search')),
      page.mouse.up(),
    ]);
    const sent = /^(.*)$/.exec(await page.evaluate(() => window.__sentBbox || ''));
    const got = sent ? sent[1].split(',').map(Number) : [];
    ok(got.length === 4 && got.every((v, i) => Math.abs(v - want[i]) <= 2),
      `the drawn box is sent in image pixels: ${sent && sent[1]} (want ~${want.join(',')} of ${natural.join('x')})`);
    ok(br.status() === 200, `box search -> 200 (got ${br.status()})`);
    await page.waitForFunction(() => /for the box/.test(document.getElementById('results-summary').textContent));
    ok(await page.inputValue('#bbox') === (sent && sent[1]), 'the box field shows the same box');
    ok(await page.isVisible('#box'), 'the box is drawn on the preview');
    await page.screenshot({ path: path.join(shots, '5-box.png') });
  }

  if (indexReady) {
    /* drop a file on the drop zone, paste one: each searches at once */
    const other = photos.filter((f) => /\.jpe?g$/i.test(f))[1];
    const bytes = fs.readFileSync(path.join(ingestRoot, other)).toString('base64');
    for (const how of ['drop', 'paste']) {
      const [res] = await Promise.all([
        page.waitForResponse((x) => x.url().endsWith('/v1/search')),
        page.evaluate(([b64, name, kind]) => {
          const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bin], name, { type: 'image/jpeg' }));
          if (kind === 'drop') {
            document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
          } else {
            document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
          }
        }, [bytes, other, how]),
      ]);
      const d = await res.json().catch(() => null);
      ok(res.status() === 200 && d && d.results[0] && d.results[0].external_id === path.relative(root, path.join(ingestRoot, other)),
        `${how} ${other}: first hit is ${d && d.results[0] ? d.results[0].external_id : '-'}`);
    }
    /* query expansion on */
    await page.selectOption('#qe', 'true');
    await page.evaluate(() => {
      window.__sentQe = null;
      const append = FormData.prototype.append;
      FormData.prototype.append = function (name, value, ...rest) {
        if (name === 'qe') window.__sentQe = String(value);
        return append.call(this, name, value, ...rest);
      };
    });
    const [qr] = await Promise.all([
      page.waitForResponse((x) => x.url().endsWith('/v1/search')),
      page.click('#search-btn'),
    ]);
    const qd = await qr.json().catch(() => null);
    ok(qr.status() === 200 && await page.evaluate(() => window.__sentQe) === 'true' && qd.results.length === K,
      `query expansion on: qe=true sent, 200 with ${qd && qd.results ? qd.results.length : '-'} results`);
  }

  /* -- narrow screen -- */
  await page.setViewportSize({ width: 380, height: 800 });
  await page.waitForTimeout(200);
  const layout = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
    cols: getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length,
  }));
  ok(layout.scroll <= layout.inner, `no horizontal scrolling at 380 px (${layout.scroll} <= ${layout.inner})`);
  if (indexReady) ok(layout.cols === 2, `two result columns at 380 px (got ${layout.cols})`);
  await page.screenshot({ path: path.join(shots, '6-narrow.png'), fullPage: true });
  /* the dark scheme follows the system (a screenshot to look at) */
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 1100, height: 760 });
  const darkBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  ok(darkBg === 'rgb(20, 23, 29)', `dark scheme background (${darkBg})`);
  await page.screenshot({ path: path.join(shots, '7-dark.png') });

  /* HTTP errors the page handled (401, 415, ...) are logged by chromium as
   * "Failed to load resource"; anything else is a script error */
  const scriptErrors = consoleErrors.filter((e) => !/^Failed to load resource: the server responded/.test(e));
  ok(scriptErrors.length === 0, 'no script errors in the console', scriptErrors.join('\n'));
  diag(`screenshots in ${shots}`);
}

let rc = 0;
try {
  await main();
} catch (e) {
  ok(false, 'test ran to the end', (e && e.stack) || e);
  if (log) diag('server log (tail):\n' + log.split('\n').slice(-30).join('\n'));
}
if (browser) await browser.close().catch(() => {});
if (server && server.exitCode === null) {
  server.kill('SIGTERM');
  await new Promise((res) => { const t = setTimeout(res, 15000); server.on('exit', () => { clearTimeout(t); res(); }); });
}
console.log(`1..${n}`);
if (failed) {
  diag(`${failed} of ${n} failed`);
  rc = 1;
}
process.exit(rc);
