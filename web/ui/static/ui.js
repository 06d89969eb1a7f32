// pwmesh web UI: small enhancements over pages that work without script.
// Live job state and logs, upload progress, confirmations. Every request
// goes to /ui/api/... (the API, with the session's key added by the
// server); a state change carries the page's anti-forgery token.
(function () {
  'use strict';

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute('content') : '';
  var TERMINAL = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };

  function terminal(state) { return TERMINAL.hasOwnProperty(state); }
  // leaving is set once a form of the page is sent.
  var leaving = false;
  document.addEventListener('submit', function (ev) { if (!ev.defaultPrevented) { leaving = true; } });
  function stateName(state) { return String(state).replace(/_/g, ' '); }
  var BADGES = { queued: 'queued', running: 'running', succeeded: 'ok', failed: 'bad', cancelled: 'off', timed_out: 'warn' };
  function badgeClass(state) { return 'badge badge-' + (BADGES[state] || 'off'); }
  function wait(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // toLogin goes to sign-in and back here afterwards.
  function toLogin() {
    location.href = '/ui/login?expired=1&next=' + encodeURIComponent(location.pathname + location.search);
  }

  function api(path, opts) {
    opts = opts || {};
    opts.credentials = 'same-origin';
    opts.headers = opts.headers || {};
    if (opts.method && opts.method !== 'GET') { opts.headers['X-CSRF-Token'] = csrf; }
    return fetch('/ui/api' + path, opts);
  }

  // follow long-polls one job (GET /jobs/{id}?wait=) and calls onChange
  // with each new version, until the job has finished.
  async function follow(id, state, onChange) {
    var backoff = 1000;
    while (!terminal(state)) {
      var res;
      try {
        res = await api('/jobs/' + encodeURIComponent(id) + '?wait=30s&state=' + encodeURIComponent(state));
      } catch (e) {
        await wait(backoff); backoff = Math.min(backoff * 2, 30000); continue;
      }
      if (res.status === 401) { toLogin(); return; }
      if (!res.ok) { await wait(backoff); backoff = Math.min(backoff * 2, 30000); continue; }
      backoff = 1000;
      var j = await res.json();
      var changed = j.state !== state;
      state = j.state;
      onChange(j, changed);
    }
  }

  function setText(el, text) { if (el) { el.textContent = text == null ? '' : String(text); } }

  function fmtTime(s) {
    if (!s) { return ''; }
    return s.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
  }

  // The job page: state, queue position, reason and log, live.
  function jobPage(sec) {
    var id = sec.getAttribute('data-id');
    var state = sec.getAttribute('data-state');
    // "Job submitted." shows once: a reload of the page does not repeat it.
    if (sec.getAttribute('data-submitted') && window.history && history.replaceState) {
      history.replaceState(null, '', location.pathname);
    }
    var badge = document.getElementById('job-state');
    follow(id, state, function (j, changed) {
      badge.className = badgeClass(j.state) + ' badge-large';
      setText(badge, stateName(j.state));
      setText(document.getElementById('job-node'), j.node);
      setText(document.getElementById('job-attempts'), j.attempts);
      setText(document.getElementById('job-started'), fmtTime(j.started_at));
      var box = document.getElementById('job-reason-box');
      setText(document.getElementById('job-queue'), j.queue_position ? 'Position ' + j.queue_position + ' in the queue. ' : '');
      setText(document.getElementById('job-reason'), j.reason || '');
      if (box) { box.classList.toggle('hidden', !(j.reason || j.queue_position)); }
      // A finished job's page shows its metrics, image and bundle (unless
      // a form of the page is being sent: its answer is the next page).
      if (changed && terminal(j.state) && !leaving) { location.reload(); }
    });
    var log = document.getElementById('job-log');
    if (log && log.getAttribute('data-follow')) { followLog(log, log.getAttribute('data-follow')); }
  }

  // followLog streams a job's log (GET /jobs/{id}/logs?follow=1) into pre.
  async function followLog(pre, url) {
    var res;
    try {
      res = await fetch(url, { credentials: 'same-origin' });
    } catch (e) { return; }
    if (res.status === 401) { toLogin(); return; }
    if (!res.ok || !res.body) { return; }
    var status = document.getElementById('log-status');
    setText(status, 'Following the log…');
    var reader = res.body.getReader();
    var dec = new TextDecoder();
    var first = true;
    for (;;) {
      var r;
      try { r = await reader.read(); } catch (e) { break; }
      if (r.done) { break; }
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      if (first) { pre.textContent = ''; first = false; }
      pre.appendChild(document.createTextNode(dec.decode(r.value, { stream: true })));
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    }
    setText(status, '');
  }

  // The jobs list: the rows of unfinished jobs follow their job, a few at
  // a time (each follow holds a connection).
  function jobsPage(table) {
    var rows = Array.prototype.filter.call(table.querySelectorAll('tr[data-job]'), function (tr) {
      return !terminal(tr.getAttribute('data-state'));
    });
    var next = 0;
    function worker() {
      if (next >= rows.length) { return Promise.resolve(); }
      var tr = rows[next++];
      return follow(tr.getAttribute('data-job'), tr.getAttribute('data-state'), function (j) {
        tr.setAttribute('data-state', j.state);
        var b = tr.querySelector('[data-field="state"]');
        b.className = badgeClass(j.state);
        setText(b, stateName(j.state));
        var reason = tr.querySelector('[data-field="reason"]');
        reason.textContent = '';
        if (j.queue_position) {
          var pos = document.createElement('span');
          pos.className = 'pos';
          pos.textContent = '#' + j.queue_position + ' in queue';
          reason.appendChild(pos);
          reason.appendChild(document.createTextNode(' '));
        }
        reason.appendChild(document.createTextNode((j.reason || '') + (j.error ? j.error.message : '')));
      }).then(worker);
    }
    for (var i = 0; i < 3; i++) { worker(); }
  }

  // The submit form: only the chosen type's parameters show.
  function submitForm(form) {
    var radios = form.querySelectorAll('input[name="type"]');
    var sets = form.querySelectorAll('fieldset.params');
    var dataset = form.querySelector('#dataset');
    function sync() {
      var chosen = form.querySelector('input[name="type"]:checked');
      if (!chosen) { return; }
      Array.prototype.forEach.call(sets, function (fs) { fs.hidden = fs.getAttribute('data-type') !== chosen.value; });
      if (dataset) { dataset.required = chosen.getAttribute('data-needs-dataset') === 'true'; }
    }
    Array.prototype.forEach.call(radios, function (r) { r.addEventListener('change', sync); });
    sync();
    form.addEventListener('submit', function () {
      var b = document.getElementById('submit-button');
      if (b) { setTimeout(function () { b.disabled = true; b.textContent = 'Submitting…'; }, 0); }
    });
  }

  // The upload form: the file goes straight to the API with a progress bar.
  function uploadForm(form) {
    var file = form.querySelector('#up-file');
    var name = form.querySelector('#up-name');
    var box = document.getElementById('upload-progress-box');
    var bar = document.getElementById('upload-progress');
    var text = document.getElementById('upload-progress-text');
    var button = document.getElementById('upload-button');
    form.addEventListener('submit', function (ev) {
      var f = file.files && file.files[0];
      if (!f || !window.XMLHttpRequest) { return; }
      ev.preventDefault();
      var n = name.value.trim() || f.name;
      var xhr = new XMLHttpRequest();
      xhr.open('POST', '/ui/api/datasets?name=' + encodeURIComponent(n));
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      box.classList.remove('hidden');
      button.disabled = true;
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) { return; }
        var p = Math.round(e.loaded / e.total * 100);
        bar.value = p;
        bar.textContent = p + '%';
        setText(text, p + '% of ' + e.total.toLocaleString() + ' bytes');
      };
      xhr.upload.onload = function () { setText(text, 'Sealing and storing…'); };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) { location.href = '/ui/datasets?ok=uploaded'; return; }
        if (xhr.status === 401) { toLogin(); return; }
        var msg = 'The upload failed (' + xhr.status + ').';
        try { msg = JSON.parse(xhr.responseText).error.message || msg; } catch (e) { /* not JSON */ }
        fail(msg);
      };
      xhr.onerror = function () { fail('The upload was cut off; try again.'); };
      xhr.send(f);
    });
    function fail(msg) {
      box.classList.add('hidden');
      button.disabled = false;
      var a = document.createElement('div');
      a.className = 'alert alert-error';
      a.setAttribute('role', 'alert');
      a.textContent = msg;
      form.parentNode.insertBefore(a, form);
    }
  }

  // Forms that destroy something ask first.
  function confirmForms() {
    Array.prototype.forEach.call(document.querySelectorAll('form[data-confirm]'), function (f) {
      f.addEventListener('submit', function (ev) {
        if (!window.confirm(f.getAttribute('data-confirm'))) { ev.preventDefault(); }
      });
    });
  }

  function init() {
    confirmForms();
    var job = document.getElementById('job');
    if (job) { jobPage(job); }
    var jobs = document.getElementById('jobs-table');
    if (jobs) { jobsPage(jobs); }
    var submit = document.getElementById('submit-form');
    if (submit) { submitForm(submit); }
    var upload = document.getElementById('upload-form');
    if (upload) { uploadForm(upload); }
  }

  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', init); } else { init(); }
}());
