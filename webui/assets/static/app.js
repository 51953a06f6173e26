// Live countdowns: each <time data-countdown datetime="..."> was rendered by the server
// ("in 1m 52s"); this only keeps it moving. Without JavaScript the server's text stands.
(function () {
  "use strict";
  var els = document.querySelectorAll("time[data-countdown]");
  if (!els.length) return;
  function fmt(ms) {
    var past = ms < 0, s = Math.round(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var t = h >= 48 ? Math.floor(h / 24) + "d" : h ? h + "h " + m + "m" : m ? m + "m " + r + "s" : r + "s";
    return past ? t + " ago" : "in " + t;
  }
  function tick() {
    var now = Date.now();
    for (var i = 0; i < els.length; i++) {
      var at = Date.parse(els[i].getAttribute("datetime"));
      if (!isNaN(at)) els[i].textContent = fmt(at - now);
    }
  }
  tick();
  setInterval(tick, 1000);
})();
