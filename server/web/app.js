/* imago web page: search by image (drop, pick or paste; optional query box
 * drawn on the preview), results as a thumbnail grid, and an admin view to
 * start bulk-ingest jobs and watch them. Plain JS, no build step; talks only
 * to the JSON API of proto/openapi.yaml on the same origin. Server text is
 * always inserted with textContent, never as HTML. */
(function () {
  'use strict';

  var KEY_SEARCH = 'imago.searchToken';
  var KEY_ADMIN = 'imago.adminToken';
  var KEY_JOBS = 'imago.jobs';
  var POLL_MS = 500;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function store(key, value) {
    try {
      if (value) sessionStorage.setItem(key, value);
      else sessionStorage.removeItem(key);
    } catch (e) { /* storage disabled: keep it in memory only */ }
  }

  function load(key) {
    try { return sessionStorage.getItem(key) || ''; } catch (e) { return ''; }
  }

  var mem = { search: load(KEY_SEARCH), admin: load(KEY_ADMIN) };

  /* ---- the API ---------------------------------------------------------- */

  function ApiError(status, code, message, retryAfter) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.retryAfter = retryAfter;
  }

  /* Calls the API; resolves with the parsed JSON (or null), rejects with an
   * ApiError (status 0 = the server could not be reached). */
  function api(method, path, opts) {
    opts = opts || {};
    var headers = {};
    if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
    var body = opts.body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    return fetch(path, { method: method, headers: headers, body: body, cache: 'no-store' })
      .catch(function (e) {
        throw new ApiError(0, 'network', 'cannot reach the server (' + e.message + ')', 0);
      })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (r.ok) return data;
          var err = data && data.error ? data.error : {};
          throw new ApiError(r.status, err.code || 'http_' + r.status,
            err.message || (r.status + ' ' + r.statusText),
            parseInt(r.headers.get('Retry-After') || '0', 10) || 0);
        });
      });
  }

  /* One line for a person. */
  function describe(e) {
    if (!(e instanceof ApiError)) return 'Unexpected error: ' + (e && e.message ? e.message : e);
    if (e.code === 'busy') {
      return 'Server busy, retry in ' + (e.retryAfter || 1) + ' s (' + e.message + ').';
    }
    if (e.code === 'not_ready') return 'Server not ready: ' + e.message + '. Retry shortly.';
    if (e.status === 0) return 'Network error: ' + e.message + '.';
    return e.message + ' (' + e.code + ', HTTP ' + e.status + ')';
  }

  function setStatus(node, text, kind) {
    node.textContent = text || '';
    node.className = 'status' + (kind ? ' ' + kind : '');
  }

  function searchToken() { return mem.search || mem.admin || ''; }

  /* ---- server info ------------------------------------------------------ */

  var info = null;
  var infoTimer = 0;

  function loadInfo() {
    clearTimeout(infoTimer);
    return api('GET', '/v1/info').then(function (d) {
      info = d;
      var line = $('model-line');
      line.textContent = '';
      var m = d.model;
      if (!m) {
        line.textContent = 'imago ' + d.version + ' · model loading…';
      } else {
        var parts = [m.name + (m.backbone ? ' (' + m.backbone + (m.head ? ' + ' + m.head : '') + ')' : ''),
          m.dim + '-d'];
        var b = d.backend || {};
        if (b.name) parts.push([b.name, b.precision, b.device].filter(Boolean).join(' '));
        var ix = d.index || {};
        if (ix.size !== null && ix.size !== undefined) {
          parts.push((ix.type ? ix.type + ' index, ' : 'index: ') + ix.size + ' image' + (ix.size === 1 ? '' : 's'));
        }
        line.textContent = parts.join(' · ');
        line.title = m.fingerprint ? 'model fingerprint ' + m.fingerprint : '';
      }
      var ixs = d.index || {};
      if (ixs.size === 0 && !$('grid').children.length) {
        $('results-summary').textContent = 'The collection is empty: index a folder in the Admin view.';
      }
      var demo = !!(m && m.demo);
      $('demo-note').hidden = !demo;
      if (demo) {
        var w = (m.warning || 'random weights, not a trained retrieval model').replace(/^demo model:\s*/i, '');
        $('demo-text').textContent = w.charAt(0).toUpperCase() + w.slice(1) +
          (/[.!]$/.test(w) ? '' : '.') + ' Configure a converted model (engine.model) for real retrieval.';
      }
      showWhitening(ixs);
      if (!d.ready || !m) infoTimer = setTimeout(loadInfo, 2000);
    }).catch(function (e) {
      var line = $('model-line');
      line.textContent = '';
      line.appendChild(el('span', 'bad', 'Server info unavailable: ' + describe(e)));
      infoTimer = setTimeout(loadInfo, 5000);
    });
  }

  /* ---- tabs ------------------------------------------------------------- */

  var tabs = [$('tab-search'), $('tab-admin')];

  function selectTab(tab, focus) {
    tabs.forEach(function (t) {
      var on = t === tab;
      t.setAttribute('aria-selected', on ? 'true' : 'false');
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    });
    if (focus) tab.focus();
    var admin = tab.id === 'tab-admin';
    if (history.replaceState) history.replaceState(null, '', admin ? '#admin' : location.pathname);
    if (admin) refreshJobs();
  }

  tabs.forEach(function (t, i) {
    t.addEventListener('click', function () { selectTab(t, false); });
    t.addEventListener('keydown', function (e) {
      var n = null;
      if (e.key === 'ArrowRight') n = tabs[(i + 1) % tabs.length];
      else if (e.key === 'ArrowLeft') n = tabs[(i + tabs.length - 1) % tabs.length];
      else if (e.key === 'Home') n = tabs[0];
      else if (e.key === 'End') n = tabs[tabs.length - 1];
      if (n) { e.preventDefault(); selectTab(n, true); }
    });
  });

  /* ---- the query image -------------------------------------------------- */

  var drop = $('drop');
  var fileInput = $('file');
  var previewWrap = $('preview-wrap');
  var preview = $('preview');
  var img = $('preview-img');
  var boxEl = $('box');
  var bboxInput = $('bbox');
  var searchStatus = $('search-status');
  var query = { file: null, url: '', w: 0, h: 0, box: null };

  function openPicker() { fileInput.click(); }

  drop.addEventListener('click', openPicker);
  drop.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' || e.key === ' ' || e.key === 'Spacebar') {
      e.preventDefault();
      openPicker();
    }
  });
  $('change-image').addEventListener('click', openPicker);
  fileInput.addEventListener('change', function () {
    if (fileInput.files && fileInput.files[0]) setFile(fileInput.files[0]);
    fileInput.value = ''; /* picking the same file again fires change */
  });

  function searchVisible() { return !$('view-search').hidden; }

  /* Dropping anywhere on the search view works; the browser must not
   * navigate to the dropped file. */
  var dragDepth = 0;
  window.addEventListener('dragenter', function (e) {
    if (!searchVisible()) return;
    dragDepth++;
    drop.classList.add('over');
    e.preventDefault();
  });
  window.addEventListener('dragleave', function () {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) drop.classList.remove('over');
  });
  window.addEventListener('dragover', function (e) { e.preventDefault(); });
  window.addEventListener('drop', function (e) {
    e.preventDefault();
    dragDepth = 0;
    drop.classList.remove('over');
    if (!searchVisible()) return;
    var f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) setFile(f);
  });
  document.addEventListener('paste', function (e) {
    if (!searchVisible() || !e.clipboardData) return;
    var items = e.clipboardData.items || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === 'file') {
        var f = items[i].getAsFile();
        if (f) { e.preventDefault(); setFile(f); return; }
      }
    }
  });

  function setFile(file) {
    if (query.url) URL.revokeObjectURL(query.url);
    query.file = file;
    query.url = URL.createObjectURL(file);
    query.w = query.h = 0;
    setBox(null);
    preview.classList.remove('broken');
    img.hidden = false;
    $('preview-help').hidden = false;
    var old = preview.querySelector('.no-preview');
    if (old) old.remove();
    img.src = query.url;
    previewWrap.hidden = false;
    drop.classList.add('compact');
    $('change-image').hidden = false;
    $('search-btn').disabled = false;
    runSearch();
  }

  img.addEventListener('load', function () {
    query.w = img.naturalWidth;
    query.h = img.naturalHeight;
    img.alt = 'The query image, ' + query.w + ' × ' + query.h + ' pixels';
    drawBox();
  });
  img.addEventListener('error', function () {
    if (!query.file) return;
    query.w = query.h = 0;
    img.hidden = true;
    $('preview-help').hidden = true;
    preview.classList.add('broken');
    if (!preview.querySelector('.no-preview')) {
      preview.appendChild(el('p', 'hint no-preview',
        'No preview: the browser cannot show "' + query.file.name + '" as an image.'));
    }
  });

  /* ---- the query box (image pixels, after EXIF orientation: the browser
   * shows images oriented, and naturalWidth/Height are the oriented size) -- */

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  function setBox(b) {
    query.box = b;
    bboxInput.value = b ? b.join(',') : '';
    drawBox();
  }

  function drawBox() {
    var b = query.box;
    if (!b || !query.w || !query.h) { boxEl.hidden = true; return; }
    boxEl.hidden = false;
    boxEl.style.left = (100 * b[0] / query.w) + '%';
    boxEl.style.top = (100 * b[1] / query.h) + '%';
    boxEl.style.width = (100 * (b[2] - b[0]) / query.w) + '%';
    boxEl.style.height = (100 * (b[3] - b[1]) / query.h) + '%';
  }

  function toImage(e) {
    var r = img.getBoundingClientRect();
    return [clamp((e.clientX - r.left) / r.width, 0, 1) * query.w,
      clamp((e.clientY - r.top) / r.height, 0, 1) * query.h];
  }

  var drag = null;
  preview.addEventListener('pointerdown', function (e) {
    if (!query.w || e.button !== 0) return;
    e.preventDefault();
    preview.setPointerCapture(e.pointerId);
    drag = { id: e.pointerId, start: toImage(e), x0: e.clientX, y0: e.clientY };
  });
  preview.addEventListener('pointermove', function (e) {
    if (!drag || e.pointerId !== drag.id) return;
    var p = toImage(e), s = drag.start;
    query.box = [Math.round(Math.min(s[0], p[0])), Math.round(Math.min(s[1], p[1])),
      Math.round(Math.max(s[0], p[0])), Math.round(Math.max(s[1], p[1]))];
    bboxInput.value = query.box.join(',');
    drawBox();
  });
  function endDrag(e, cancelled) {
    if (!drag || e.pointerId !== drag.id) return;
    var moved = Math.abs(e.clientX - drag.x0) + Math.abs(e.clientY - drag.y0);
    drag = null;
    var b = query.box;
    if (cancelled || moved < 6 || !b || b[2] - b[0] < 2 || b[3] - b[1] < 2) {
      /* a click, not a drag: no box */
      if (b) { setBox(null); if (!cancelled) runSearch(); }
      return;
    }
    setBox(b);
    runSearch();
  }
  preview.addEventListener('pointerup', function (e) { endDrag(e, false); });
  preview.addEventListener('pointercancel', function (e) { endDrag(e, true); });

  /* The box can be typed too (keyboard users, exact coordinates). */
  function parseBox(text) {
    text = text.trim();
    if (!text) return null;
    var v = text.split(',').map(function (s) { return s.trim() === '' ? NaN : Number(s); });
    if (v.length !== 4 || v.some(function (x) { return !isFinite(x) || x < 0; })) {
      throw new Error('Query box: give four numbers x1,y1,x2,y2 (pixels, >= 0).');
    }
    if (!(v[0] < v[2] && v[1] < v[3])) throw new Error('Query box: needs x1 < x2 and y1 < y2.');
    return v;
  }

  bboxInput.addEventListener('change', function () {
    try {
      setBox(parseBox(bboxInput.value));
      setStatus(searchStatus, '');
    } catch (e) {
      setStatus(searchStatus, e.message, 'error');
    }
  });
  $('clear-box').addEventListener('click', function () {
    var had = !!query.box;
    setBox(null);
    if (had) runSearch();
  });

  /* ---- search ----------------------------------------------------------- */

  var seq = 0;
  var thumbUrls = [];

  $('search-form').addEventListener('submit', function (e) {
    e.preventDefault();
    if (!query.file) { openPicker(); return; }
    try {
      query.box = parseBox(bboxInput.value);
      drawBox();
    } catch (err) {
      setStatus(searchStatus, err.message, 'error');
      return;
    }
    runSearch();
  });

  $('search-token').addEventListener('change', function () {
    mem.search = $('search-token').value.trim();
    store(KEY_SEARCH, mem.search);
  });

  function runSearch() {
    if (!query.file) return;
    var k = Number($('k').value);
    if (!Number.isInteger(k) || k < 1 || k > 1000) {
      setStatus(searchStatus, 'Results: give a whole number from 1 to 1000.', 'error');
      $('k').focus();
      return;
    }
    var fd = new FormData();
    fd.append('k', String(k));
    var qe = $('qe').value;
    if (qe) fd.append('qe', qe);
    if (query.box) fd.append('bbox', query.box.join(','));
    fd.append('image', query.file, query.file.name || 'pasted-image');
    var mine = ++seq;
    setStatus(searchStatus, 'Searching…', 'busy');
    $('search-btn').disabled = true;
    var token = searchToken();
    api('POST', '/v1/search', { body: fd, token: token }).then(function (d) {
      if (mine !== seq) return;
      setStatus(searchStatus, '');
      render(d, k, token);
    }).catch(function (e) {
      if (mine !== seq) return;
      if (e.status === 401) {
        $('search-token-row').hidden = false;
        setStatus(searchStatus, (searchToken() ? 'The search token was not accepted' :
          'This server needs a search token') + ': enter it below, then search again.', 'error');
        $('search-token').focus();
        return;
      }
      setStatus(searchStatus, describe(e), 'error');
    }).then(function () {
      if (mine === seq) $('search-btn').disabled = !query.file;
    });
  }

  function ms(x) { return (typeof x === 'number' ? x : 0).toFixed(x >= 100 ? 0 : 1); }

  function render(d, k, token) {
    thumbUrls.forEach(function (u) { URL.revokeObjectURL(u); });
    thumbUrls = [];
    var grid = $('grid');
    grid.textContent = '';
    var hits = (d && d.results) || [];
    var t = (d && d.timings) || {};
    var summary = hits.length + ' result' + (hits.length === 1 ? '' : 's') +
      (hits.length < k ? ' (asked for ' + k + ')' : '') +
      (query.box ? ' for the box ' + query.box.join(',') : '') +
      ' · ' + ms(t.total_ms) + ' ms (forward ' + ms(t.forward_ms) + ', search ' + ms(t.search_ms) + ')';
    if (!hits.length) {
      summary = 'No results.' + (info && info.index && info.index.size === 0 ?
        ' The collection is empty: index a folder in the Admin view.' : '');
    }
    $('results-summary').textContent = summary;
    hits.forEach(function (h, i) {
      var li = el('li');
      var b = el('button', 'hit');
      b.type = 'button';
      b.dataset.id = h.id;
      var name = h.external_id || h.uri || 'image ' + h.id;
      var meta = h.metadata && Object.keys(h.metadata).length ? JSON.stringify(h.metadata) : '';
      b.title = name + '\nscore ' + h.score.toFixed(4) + (meta ? '\n' + meta : '');
      b.setAttribute('aria-label', 'Result ' + (i + 1) + ': ' + name + ', score ' + h.score.toFixed(3));
      var th = el('img', 'thumb');
      th.alt = '';
      th.loading = 'lazy';
      th.decoding = 'async';
      setThumb(th, h.id, token);
      b.appendChild(th);
      b.appendChild(el('span', 'rank', '#' + (i + 1)));
      var cap = el('span', 'cap');
      cap.appendChild(el('span', 'score', h.score.toFixed(3)));
      var meter = el('span', 'meter');
      var bar = el('span');
      bar.style.width = (100 * clamp(h.score, 0, 1)).toFixed(1) + '%';
      meter.appendChild(bar);
      cap.appendChild(meter);
      /* a path-like external id shows its last segment (all of it on hover
       * and in the details) */
      var ext = el('span', 'ext', name.replace(/^.*\/(?=[^\/])/, ''));
      ext.title = name;
      cap.appendChild(ext);
      b.appendChild(cap);
      b.addEventListener('click', function () { showHit(h, th); });
      li.appendChild(b);
      grid.appendChild(li);
    });
  }

  /* Without a token the browser loads (and caches) thumbnails itself; with
   * one they are fetched with the Authorization header. */
  function setThumb(imgEl, id, token) {
    var path = '/v1/images/' + encodeURIComponent(id) + '/thumbnail';
    if (!token) { imgEl.src = path; return; }
    fetch(path, { headers: { Authorization: 'Bearer ' + token } }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.blob();
    }).then(function (blob) {
      var u = URL.createObjectURL(blob);
      thumbUrls.push(u);
      imgEl.src = u;
    }).catch(function () { imgEl.alt = 'thumbnail unavailable'; });
  }

  var dialog = $('hit-dialog');

  function showHit(h, th) {
    $('hit-title').textContent = h.external_id || h.uri || 'image ' + h.id;
    $('hit-img').src = th.src;
    $('hit-img').alt = 'Thumbnail of ' + $('hit-title').textContent;
    var dl = $('hit-fields');
    dl.textContent = '';
    [['id', h.id], ['external id', h.external_id], ['score', h.score.toFixed(5)], ['uri', h.uri]]
      .forEach(function (f) {
        if (f[1] === null || f[1] === undefined) return;
        dl.appendChild(el('dt', '', f[0]));
        dl.appendChild(el('dd', '', f[1]));
      });
    var meta = h.metadata && Object.keys(h.metadata).length ? JSON.stringify(h.metadata, null, 2) : '';
    $('hit-meta').textContent = meta;
    $('hit-meta').hidden = !meta;
    if (dialog.showModal) dialog.showModal(); else dialog.setAttribute('open', '');
    $('hit-close').focus();
  }
  $('hit-close').addEventListener('click', function () { dialog.close(); });
  dialog.addEventListener('click', function (e) { if (e.target === dialog) dialog.close(); });

  /* ---- admin: token ------------------------------------------------------ */

  var adminStatus = $('admin-status');

  function showAdminTokenState() {
    $('admin-token').value = mem.admin;
    $('admin-token-state').textContent = mem.admin ? 'A token is set for this tab.' : 'No token set.';
  }

  $('admin-token-form').addEventListener('submit', function (e) {
    e.preventDefault();
    mem.admin = $('admin-token').value.trim();
    store(KEY_ADMIN, mem.admin);
    showAdminTokenState();
    setStatus(adminStatus, '');
    refreshJobs();
  });
  $('admin-forget').addEventListener('click', function () {
    mem.admin = '';
    store(KEY_ADMIN, '');
    showAdminTokenState();
  });

  function needAdmin() {
    if (mem.admin) return true;
    setStatus(adminStatus, 'Enter the admin token first.', 'error');
    $('admin-token').focus();
    return false;
  }

  function adminError(e) {
    if (e.status === 401) return 'The admin token was not accepted (' + e.message + ').';
    if (e.status === 403) return 'Forbidden: ' + e.message + '.';
    return describe(e);
  }

  /* ---- admin: jobs --------------------------------------------------------- */

  var known = [];
  try { known = JSON.parse(load(KEY_JOBS) || '[]').filter(Number.isInteger); } catch (e) { known = []; }
  var polls = {};

  function remember(id) {
    if (known.indexOf(id) < 0) known.unshift(id);
    known = known.slice(0, 20);
    store(KEY_JOBS, JSON.stringify(known));
  }

  $('job-form').addEventListener('submit', function (e) {
    e.preventDefault();
    if (!needAdmin()) return;
    var dir = $('job-dir').value.trim();
    if (!dir) {
      setStatus(adminStatus, 'Server folder: required.', 'error');
      $('job-dir').focus();
      return;
    }
    var body = { source: { dir: dir, recursive: $('job-recursive').checked } };
    $('job-start').disabled = true;
    setStatus(adminStatus, 'Starting…', 'busy');
    api('POST', '/v1/admin/jobs', { json: body, token: mem.admin }).then(function (d) {
      setStatus(adminStatus, 'Job #' + d.job_id + ' started.');
      remember(d.job_id);
      updateJob({ id: d.job_id, kind: 'ingest', state: 'queued', total: null, done: 0, failed: 0, errors: [] });
      poll(d.job_id);
    }).catch(function (err) {
      setStatus(adminStatus, adminError(err), 'error');
    }).then(function () { $('job-start').disabled = false; });
  });

  /* ---- admin: learned whitening ------------------------------------------ */

  var whitenStatus = $('whiten-status');

  function showWhitening(ix) {
    var w = ix && ix.whitening;
    var line = $('whiten-state');
    if (!w) {
      line.textContent = ix && ix.dim ? 'No whitening learned: the index holds the model\'s ' +
        ix.dim + '-d descriptors.' : 'No whitening learned.';
      line.title = '';
    } else {
      var when = new Date(w.created_at * 1000).toLocaleString();
      line.textContent = 'Version ' + w.version + ': ' + w.dim_in + ' \u2192 ' + w.dim +
        ' dims, power ' + w.power + ', trained on ' + w.trained_on + ' of ' + w.rows +
        ' images, ' + when + '.';
      line.title = 'fingerprint ' + w.fingerprint;
    }
    $('whiten-remove').disabled = !w;
  }

  function startWhitenJob(method, body, what) {
    if (!mem.admin) {
      setStatus(whitenStatus, 'Enter the admin token first.', 'error');
      $('admin-token').focus();
      return;
    }
    setStatus(whitenStatus, 'Starting…', 'busy');
    api(method, '/v1/admin/whitening', { json: body, token: mem.admin }).then(function (d) {
      setStatus(whitenStatus, what + ': job #' + d.job_id + ' started.');
      remember(d.job_id);
      updateJob({ id: d.job_id, kind: method === 'POST' ? 'whitening' : 'whitening_remove',
        state: 'queued', total: null, done: 0, failed: 0, errors: [] });
      poll(d.job_id);
    }).catch(function (err) {
      setStatus(whitenStatus, adminError(err), 'error');
    });
  }

  $('whiten-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var body = { power: Number($('whiten-power').value || 0.25), force: $('whiten-force').checked };
    var dim = $('whiten-dim').value.trim();
    if (dim) body.dim = Number(dim);
    startWhitenJob('POST', body, 'Learning');
  });
  $('whiten-remove').addEventListener('click', function () {
    startWhitenJob('DELETE', undefined, 'Removing');
  });

  $('jobs-refresh').addEventListener('click', function () { refreshJobs(); });

  function active(state) { return state === 'queued' || state === 'running'; }

  /* The list endpoint when the server has one; else the jobs this tab
   * started. */
  function refreshJobs() {
    if (!mem.admin) return;
    api('GET', '/v1/admin/jobs', { token: mem.admin }).then(function (d) {
      var jobs = (d && d.jobs) || [];
      jobs.forEach(function (j) {
        updateJob(j);
        if (active(j.state)) poll(j.id);
        /* the list may leave the per-item errors out: ask the job itself */
        else if (j.failed > 0 && !(j.errors && j.errors.length)) fetchJob(j.id);
      });
      return null;
    }).catch(function (e) {
      if (e.status === 404 || e.status === 405) {
        known.forEach(function (id) { fetchJob(id); });
      } else {
        setStatus(adminStatus, adminError(e), 'error');
      }
    });
  }

  function fetchJob(id) {
    return api('GET', '/v1/admin/jobs/' + id, { token: mem.admin }).then(function (j) {
      updateJob(j);
      if (active(j.state)) poll(id);
      return j;
    }).catch(function (e) {
      if (e.status === 404) {
        known = known.filter(function (x) { return x !== id; });
        store(KEY_JOBS, JSON.stringify(known));
      }
    });
  }

  function poll(id) {
    if (polls[id]) return;
    polls[id] = setTimeout(function tick() {
      api('GET', '/v1/admin/jobs/' + id, { token: mem.admin }).then(function (j) {
        updateJob(j);
        if (active(j.state)) {
          polls[id] = setTimeout(tick, POLL_MS);
        } else {
          delete polls[id];
          loadInfo(); /* the index size changed */
        }
      }).catch(function (e) {
        var card = jobCard(id);
        card.querySelector('.nums').textContent = 'Cannot update: ' + adminError(e);
        /* busy or not ready: try again later; anything else stops */
        if (e.status === 503 || e.status === 0) polls[id] = setTimeout(tick, 2000);
        else delete polls[id];
      });
    }, POLL_MS);
  }

  function jobCard(id) {
    var list = $('jobs');
    var li = list.querySelector('li[data-id="' + id + '"]');
    if (li) return li;
    li = el('li', 'job');
    li.dataset.id = id;
    var head = el('div', 'job-head');
    head.appendChild(el('strong', '', 'Job #' + id));
    head.appendChild(el('span', 'kind hint'));
    head.appendChild(el('span', 'state'));
    var cancel = el('button', 'secondary cancel', 'Cancel');
    cancel.type = 'button';
    cancel.setAttribute('aria-label', 'Cancel job ' + id);
    cancel.addEventListener('click', function () {
      cancel.disabled = true;
      api('DELETE', '/v1/admin/jobs/' + id, { token: mem.admin }).then(updateJob).catch(function (e) {
        setStatus(adminStatus, adminError(e), 'error');
        cancel.disabled = false;
      });
    });
    head.appendChild(cancel);
    li.appendChild(head);
    var bar = el('progress');
    bar.setAttribute('aria-label', 'Progress of job ' + id);
    li.appendChild(bar);
    li.appendChild(el('div', 'nums'));
    li.appendChild(el('ul', 'errors'));
    /* newest (highest id) first */
    var next = null;
    Array.prototype.some.call(list.children, function (c) {
      if (Number(c.dataset.id) < id) { next = c; return true; }
      return false;
    });
    list.insertBefore(li, next);
    $('jobs-empty').hidden = true;
    return li;
  }

  function updateJob(j) {
    if (!j || j.id === undefined) return;
    var li = jobCard(j.id);
    li.dataset.state = j.state;
    li.querySelector('.kind').textContent = j.kind || '';
    var st = li.querySelector('.state');
    st.textContent = j.state;
    st.className = 'state ' + j.state;
    li.querySelector('.cancel').hidden = !active(j.state);
    var bar = li.querySelector('progress');
    bar.classList.toggle('has-failed', (j.failed || 0) > 0);
    var processed = (j.done || 0) + (j.failed || 0);
    var pct = null;
    if (typeof j.total === 'number') {
      bar.max = Math.max(1, j.total);
      bar.value = j.total ? processed : (j.state === 'done' ? 1 : 0);
      pct = j.total ? Math.floor(100 * processed / j.total) : (j.state === 'done' ? 100 : 0);
      li.dataset.percent = pct;
    } else {
      bar.removeAttribute('value'); /* indeterminate until the folder is listed */
    }
    var nums = [];
    nums.push(pct === null ? processed + ' processed (listing files…)' :
      pct + '% · ' + processed + ' / ' + j.total);
    nums.push((j.failed || 0) + ' failed');
    if (typeof j.rate === 'number' && j.rate > 0 && active(j.state)) nums.push(j.rate.toFixed(1) + ' images/s');
    if (typeof j.eta_s === 'number' && active(j.state)) nums.push('ETA ' + Math.ceil(j.eta_s) + ' s');
    li.querySelector('.nums').textContent = nums.join(' · ');
    var errs = li.querySelector('.errors');
    errs.textContent = '';
    (j.errors || []).forEach(function (x) {
      var item = el('li');
      item.appendChild(el('code', '', x.path));
      item.appendChild(document.createTextNode(': ' + x.message + ' (' + x.code + ')'));
      errs.appendChild(item);
    });
    if ((j.errors || []).length < (j.failed || 0)) {
      errs.appendChild(el('li', 'hint', '… ' + (j.failed - j.errors.length) + ' more'));
    }
  }

  /* ---- start ------------------------------------------------------------- */

  if (mem.search) {
    $('search-token').value = mem.search;
    $('search-token-row').hidden = false;
  }
  showAdminTokenState();
  selectTab(location.hash === '#admin' ? tabs[1] : tabs[0], false);
  loadInfo();
})();
