// keyward's dashboard needs script for two conveniences only; everything works without it.
(function () {
  'use strict';

  // A page drawn in answer to a form (a key shown once) shows its own address, so that a
  // reload fetches the page instead of posting the form again.
  var replace = document.querySelector('meta[name="kw-replace-url"]');
  if (replace && window.history && history.replaceState) {
    history.replaceState(null, '', replace.getAttribute('content'));
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener('click', function (event) {
    var button = event.target.closest('[data-copy]');
    if (!button) return;
    var source = document.getElementById(button.getAttribute('data-copy'));
    if (!source) return;
    var text = source.textContent.trim();
    function say(label) {
      button.textContent = label;
      window.setTimeout(function () { button.textContent = 'Copy'; }, 2500);
    }
    function fallback() {
      selectText(source);
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      say(ok ? 'Copied' : 'Press Ctrl+C');
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say('Copied'); }, fallback);
    } else {
      fallback();
    }
  });
})();
