(function(){
  var data = JSON.parse(document.getElementById('mn-chart-data').textContent);
  function fmt(v){
    if (v === null || v === undefined) return '\u2014';
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return Number(v.toPrecision(3)).toString();
  }
  Object.keys(data).forEach(function(cid){
    var d = data[cid], svg = document.getElementById(cid);
    if (!svg) return;
    var box = svg.parentNode, tip = box.querySelector('.tip');
    var guide = svg.querySelector('.guide');
    var g = d.geom, W = g[0], H = g[1], L = g[2], R = g[3], T = g[4], B = g[5];
    var ns = 'http://www.w3.org/2000/svg', dots = [];
    d.series.forEach(function(s){
      var c = document.createElementNS(ns, 'circle');
      c.setAttribute('r', 3.5); c.setAttribute('fill', s.color);
      c.setAttribute('visibility', 'hidden'); svg.appendChild(c); dots.push(c);
    });
    function sx(x){ return L + (x - d.x0) / (d.x1 - d.x0) * (W - L - R); }
    function sy(y){ return H - B - (y - d.y0) / (d.y1 - d.y0) * (H - T - B); }
    function hide(){ tip.hidden = true; guide.setAttribute('visibility', 'hidden');
      dots.forEach(function(c){ c.setAttribute('visibility', 'hidden'); }); }
    function show(ev){
      var m = svg.getScreenCTM(); if (!m) return;
      var pt = svg.createSVGPoint(); pt.x = ev.clientX; pt.y = ev.clientY;
      var p = pt.matrixTransform(m.inverse());
      if (p.x < L || p.x > W - R) { hide(); return; }
      var x = d.x0 + (p.x - L) / (W - L - R) * (d.x1 - d.x0);
      var lo = 0, hi = d.t.length - 1;
      while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (d.t[mid] < x) lo = mid; else hi = mid; }
      var i = (Math.abs(d.t[hi] - x) < Math.abs(d.t[lo] - x)) ? hi : lo;
      var gx = sx(d.t[i]);
      guide.setAttribute('x1', gx); guide.setAttribute('x2', gx);
      guide.setAttribute('visibility', 'visible');
      tip.textContent = '';
      var head = document.createElement('div');
      head.textContent = 'day ' + fmt(d.t[i]);
      head.style.fontWeight = '600'; tip.appendChild(head);
      d.series.forEach(function(s, k){
        var v = s.v[i], row = document.createElement('div');
        var txt = s.name + ': ' + fmt(v);
        if (s.lo && s.hi && s.lo[i] !== null && s.hi[i] !== null)
          txt += ' [' + fmt(s.lo[i]) + '\u2013' + fmt(s.hi[i]) + ']';
        if (d.units) txt += ' ' + d.units;
        row.textContent = txt; row.style.color = s.color; tip.appendChild(row);
        if (v === null) { dots[k].setAttribute('visibility', 'hidden'); }
        else { dots[k].setAttribute('cx', gx); dots[k].setAttribute('cy', sy(v));
               dots[k].setAttribute('visibility', 'visible'); }
      });
      tip.hidden = false;
      var rect = box.getBoundingClientRect();
      var left = ev.clientX - rect.left + 14, top = ev.clientY - rect.top + 10;
      if (left + tip.offsetWidth > rect.width) left = ev.clientX - rect.left - tip.offsetWidth - 14;
      tip.style.left = Math.max(0, left + box.scrollLeft) + 'px'; tip.style.top = top + 'px';
    }
    svg.addEventListener('mousemove', show);
    svg.addEventListener('mouseleave', hide);
  });
})();
