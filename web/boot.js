// boot.js - runs before the page paints (a classic script in <head>): applies the saved theme so a
// chosen light or dark page never flashes in the other one. app.js takes over from here.
(function () {
  var mode = null;
  try { mode = localStorage.getItem('theme'); } catch (e) { mode = null; }
  if (mode !== 'light' && mode !== 'dark') {
    mode = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.dataset.theme = mode;
})();
