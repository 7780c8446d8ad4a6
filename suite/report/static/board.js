// sparq leaderboard: tabs, filters, sort, Pareto hover/click, best under budget, copy.
// Plain JS on the elements the server rendered; data is only ever set as textContent.
(function () {
  'use strict';
  var doc = document, $ = function (s, el) { return (el || doc).querySelector(s); };
  var $$ = function (s, el) { return Array.prototype.slice.call((el || doc).querySelectorAll(s)); };
  doc.documentElement.classList.add('js');

  // ---- tabs (every section is shown, in order, without JS)
  var tabs = $$('#tabs a');
  function showTab(id) {
    if (!$('#' + CSS.escape(id))) id = 'tab-board';
    $$('.tab').forEach(function (s) { s.classList.toggle('active', s.id === id); });
    tabs.forEach(function (a) { a.classList.toggle('active', a.dataset.tab === id); });
  }
  tabs.forEach(function (a) {
    a.addEventListener('click', function (e) { e.preventDefault(); history.replaceState(null, '', '#' + a.dataset.tab); showTab(a.dataset.tab); });
  });

  // ---- leaderboard: free text + one select per axis, sortable headers
  var table = $('#cells'), body = table.tBodies[0], rows = $$('tr', body);
  var box = $('#filter'), count = $('#count'), selects = $$('select.colfilter');
  function apply() {
    var q = box.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (r) {
      var ok = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
      selects.forEach(function (s) { if (s.value && r.dataset[s.dataset.attr] !== s.value) ok = false; });
      r.hidden = !ok; if (ok) shown++;
    });
    count.textContent = shown + ' of ' + rows.length + ' cells shown';
  }
  box.addEventListener('input', apply);
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  $('#reset').addEventListener('click', function () { box.value = ''; selects.forEach(function (s) { s.value = ''; }); apply(); });
  var heads = $$('thead th', table);
  heads.forEach(function (th, i) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc'), num = th.dataset.kind !== 'text';
      heads.forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      function key(r) {
        var c = r.cells[i];
        if (!num) return c.textContent.trim().toLowerCase();
        var k = c.getAttribute('data-sort'); return k === '' || k === null ? null : parseFloat(k);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });

  // ---- selecting a cell (from a Pareto point, a budget answer or claim evidence)
  function rowsOf(attr, value) { return rows.filter(function (r) { return r.dataset[attr] === value; }); }
  function select(found) {
    if (!found.length) return;
    rows.forEach(function (r) { r.classList.remove('selected'); });
    found.forEach(function (r) { r.classList.add('selected'); if (r.hidden) { r.hidden = false; } });
    showTab('tab-board'); if (location.hash !== '#tab-board') history.replaceState(null, '', '#tab-board');
    found[0].scrollIntoView({block: 'center'});
  }
  $$('a.ev').forEach(function (a) {
    a.addEventListener('click', function (e) {
      var found = a.dataset.key ? rowsOf('key', a.dataset.key) : rowsOf('cell', a.dataset.cell);
      if (found.length) { e.preventDefault(); select(found); }
    });
  });

  // ---- Pareto points: hover shows the cell (and marks its row), click selects the row
  var tip = $('#tip');
  $$('svg .pt').forEach(function (p) {
    var row = rowsOf('key', p.dataset.key);
    p.addEventListener('mouseenter', function () {
      tip.textContent = p.dataset.tip; tip.hidden = false; p.classList.add('hl');
      row.forEach(function (r) { r.classList.add('hl'); });
    });
    p.addEventListener('mousemove', function (e) { tip.style.left = (e.clientX + 14) + 'px'; tip.style.top = (e.clientY + 10) + 'px'; });
    p.addEventListener('mouseleave', function () {
      tip.hidden = true; p.classList.remove('hl'); row.forEach(function (r) { r.classList.remove('hl'); });
    });
    p.addEventListener('click', function () { tip.hidden = true; select(row); });
  });

  // ---- best under budget: highest score with size <= max and latency <= max, per task
  var maxSize = $('#max-size'), maxLat = $('#max-lat');
  function num(v) { return v === '' || v === undefined ? null : parseFloat(v); }
  function budget() {
    var ms = num(maxSize.value), ml = num(maxLat.value);
    $$('#budget-live tbody tr').forEach(function (tr) {
      var name = tr.dataset.task, best = null;
      rows.forEach(function (r) {
        if (r.dataset.task + ' (' + r.dataset.profile + ')' !== name) return;
        var acc = num(r.dataset.acc), size = num(r.dataset.size), lat = num(r.dataset.lat);
        if (acc === null) return;
        if (ms !== null && (size === null || size > ms)) return;
        if (ml !== null && (lat === null || lat > ml)) return;
        if (!best || acc > num(best.dataset.acc)) best = r;
      });
      var c = function (k) { return $(k, tr); };
      c('.b-cell').textContent = '';
      if (!best) { c('.b-cell').textContent = 'no cell within the limits'; c('.b-acc').textContent = c('.b-size').textContent = c('.b-lat').textContent = '–'; return; }
      var a = doc.createElement('a'), cells = best.cells;
      a.href = '#' + best.id; a.className = 'ev';
      a.textContent = [cells[4], cells[5], cells[7], cells[8], cells[14]].map(function (x) { return x.textContent.trim(); }).join(' · ');
      a.addEventListener('click', function (e) { e.preventDefault(); select([best]); });
      c('.b-cell').appendChild(a);
      c('.b-acc').textContent = cells[2].textContent; c('.b-size').textContent = cells[12].textContent;
      c('.b-lat').textContent = cells[13].textContent;
    });
  }
  maxSize.addEventListener('input', budget); maxLat.addEventListener('input', budget);

  // ---- copy buttons
  $$('button.copy').forEach(function (b) {
    b.addEventListener('click', function () {
      var text = b.dataset.copy, done = function () { var t = b.textContent; b.textContent = 'copied'; setTimeout(function () { b.textContent = t; }, 1200); };
      if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); } else { fallback(); }
      function fallback() {
        var ta = doc.createElement('textarea'); ta.value = text; ta.setAttribute('readonly', ''); ta.style.position = 'fixed'; ta.style.opacity = '0';
        doc.body.appendChild(ta); ta.select(); try { doc.execCommand('copy'); done(); } catch (e) { /* the command stays visible to select by hand */ }
        doc.body.removeChild(ta);
      }
    });
  });

  // ---- the address names a tab (#tab-...) or a cell (#cell-<cell_id>)
  function route() {
    var h = decodeURIComponent((location.hash || '#tab-board').slice(1));
    if (h.indexOf('cell-') === 0 && rowsOf('cell', h.slice(5)).length) { select(rowsOf('cell', h.slice(5))); return; }
    showTab(h);
  }
  window.addEventListener('hashchange', route);
  apply(); budget(); route();
})();
