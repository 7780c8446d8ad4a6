// sparq leaderboard: tabs, filters, sort within blocks, expand a configuration's records,
// Pareto hover/click, best under budget, copy. Plain JS on the elements the server rendered;
// data is only ever set as textContent.
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

  // ---- configurations: one row each, its records in the row after it (opened by its button)
  var table = $('#configs'), blocks = $$('tbody.block', table), rows = $$('tr.cfg', table);
  function recsOf(r) { return $('#recs-' + CSS.escape(r.dataset.key)); }
  function expand(r, open) {
    var recs = recsOf(r), b = $('button.expand', r);
    recs.classList.toggle('open', open); b.setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  rows.forEach(function (r) {
    $('button.expand', r).addEventListener('click', function () { expand(r, !recsOf(r).classList.contains('open')); });
  });

  // ---- filters: free text + one select per axis + compressed only; a block with no row left is hidden
  var box = $('#filter'), count = $('#count'), selects = $$('select.colfilter'), compressed = $('#compressed-only');
  function apply() {
    var q = box.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (r) {
      var ok = !q || r.textContent.toLowerCase().indexOf(q) >= 0 || recsOf(r).textContent.toLowerCase().indexOf(q) >= 0;
      selects.forEach(function (s) { if (s.value && r.dataset[s.dataset.attr] !== s.value) ok = false; });
      if (compressed.checked && r.dataset.compressed !== '1') ok = false;
      r.hidden = !ok; recsOf(r).hidden = !ok; if (ok) shown++;
    });
    blocks.forEach(function (b) { b.hidden = !$$('tr.cfg', b).some(function (r) { return !r.hidden; }); });
    count.textContent = shown + ' of ' + rows.length + ' configurations shown';
  }
  box.addEventListener('input', apply);
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  compressed.addEventListener('change', apply);
  $('#reset').addEventListener('click', function () {
    box.value = ''; compressed.checked = false; selects.forEach(function (s) { s.value = ''; }); apply();
  });

  // ---- sortable headers: rows move within their block (like for like), each with its records
  var heads = $$('thead th', table).filter(function (th) { return th.parentNode.parentNode.parentNode === table; });
  heads.forEach(function (th, i) {
    if (th.dataset.kind === 'none') return;
    th.classList.add('sortable');
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc'), num = th.dataset.kind !== 'text';
      heads.forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      function key(r) {
        var c = r.cells[i];
        if (!num) return c.textContent.trim().toLowerCase();
        var k = c.getAttribute('data-sort'); return k === '' || k === null ? null : parseFloat(k);
      }
      blocks.forEach(function (b) {
        var mine = $$('tr.cfg', b);
        mine.sort(function (x, y) {
          var p = key(x), q = key(y);
          if (p === q) return 0; if (p === null) return 1; if (q === null) return -1;
          return (p < q ? -1 : 1) * (asc ? 1 : -1);
        });
        mine.forEach(function (r) { b.appendChild(r); b.appendChild(recsOf(r)); });
      });
    });
  });

  // ---- selecting configurations (a Pareto point, a budget answer) or records (claim evidence)
  function clear() { $$('.selected', table).forEach(function (r) { r.classList.remove('selected'); }); }
  function reveal(r) { if (r.hidden) { r.hidden = false; recsOf(r).hidden = false; r.parentNode.hidden = false; } }
  function select(cfgs, recs) {
    if (!cfgs.length) return;
    clear();
    cfgs.forEach(function (r) { r.classList.add('selected'); reveal(r); });
    (recs || []).forEach(function (x) { x.classList.add('selected'); });
    if (recs && recs.length) cfgs.forEach(function (r) { expand(r, true); });
    showTab('tab-board'); if (location.hash !== '#tab-board') history.replaceState(null, '', '#tab-board');
    ((recs && recs[0]) || cfgs[0]).scrollIntoView({block: 'center'});
  }
  function configsOf(key) { return rows.filter(function (r) { return r.dataset.key === key; }); }
  function selectCell(id) {
    var recs = $$('tr.rec', table).filter(function (x) { return x.dataset.cell === id; });
    var cfgs = rows.filter(function (r) { return recs.some(function (x) { return recsOf(r).contains(x); }); });
    select(cfgs, recs);
    return cfgs.length > 0;
  }
  $$('a.ev').forEach(function (a) {
    a.addEventListener('click', function (e) {
      if (a.dataset.key) { var found = configsOf(a.dataset.key); if (found.length) { e.preventDefault(); select(found); } }
      else if (selectCell(a.dataset.cell)) e.preventDefault();
    });
  });

  // ---- Pareto points: hover shows the configuration (and marks its row), click selects the row
  var tip = $('#tip');
  $$('svg .pt').forEach(function (p) {
    var row = configsOf(p.dataset.key);
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

  // ---- best under budget: highest mean score with size <= max and latency <= max, per task; never at chance
  var maxSize = $('#max-size'), maxLat = $('#max-lat');
  function num(v) { return v === '' || v === undefined ? null : parseFloat(v); }
  function budget() {
    var ms = num(maxSize.value), ml = num(maxLat.value);
    $$('#budget-live tbody tr').forEach(function (tr) {
      var name = tr.dataset.task, best = null;
      rows.forEach(function (r) {
        if (r.dataset.name !== name || r.dataset.chance === '1') return;
        var acc = num(r.dataset.acc), size = num(r.dataset.size), lat = num(r.dataset.lat);
        if (acc === null) return;
        if (ms !== null && (size === null || size > ms)) return;
        if (ml !== null && (lat === null || lat > ml)) return;
        if (!best || acc > num(best.dataset.acc)) best = r;
      });
      var c = function (k) { return $(k, tr); };
      c('.b-cell').textContent = '';
      if (!best) { c('.b-cell').textContent = 'no configuration within the limits'; c('.b-acc').textContent = c('.b-size').textContent = c('.b-lat').textContent = '–'; return; }
      var a = doc.createElement('a'), cells = best.cells;
      a.href = '#' + best.id; a.className = 'ev';
      a.textContent = best.dataset.label + ' · ' + best.dataset.budget + ' · ' + best.dataset.machine;
      a.addEventListener('click', function (e) { e.preventDefault(); select([best]); });
      c('.b-cell').appendChild(a);
      c('.b-acc').textContent = cells[2].textContent; c('.b-size').textContent = cells[7].textContent;
      c('.b-lat').textContent = cells[8].textContent;
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

  // ---- the address names a tab (#tab-...), a configuration (#cfg-c<n>) or a cell (#cell-<cell_id>)
  function route() {
    var h = decodeURIComponent((location.hash || '#tab-board').slice(1));
    if (h.indexOf('cell-') === 0 && selectCell(h.slice(5))) return;
    if (h.indexOf('cfg-') === 0 && configsOf(h.slice(4)).length) { select(configsOf(h.slice(4))); return; }
    showTab(h);
  }
  window.addEventListener('hashchange', route);
  apply(); budget(); route();
})();
