// Small progressive enhancements: the code editor, Ctrl+Enter to run, confirmations, ticking elapsed times.
(function () {
  "use strict";

  function setUpEditor() {
    var textarea = document.getElementById("script");
    if (!textarea || !window.CodeMirror) return;
    var form = textarea.form;
    var editor = CodeMirror.fromTextArea(textarea, {
      mode: "text/typescript",
      lineNumbers: true,
      lineWrapping: true,
      matchBrackets: true,
      autoCloseBrackets: true,
      indentUnit: 2,
      tabSize: 2,
      viewportMargin: Infinity,
      extraKeys: {
        "Ctrl-Enter": function () { form.requestSubmit(); },
        "Cmd-Enter": function () { form.requestSubmit(); },
      },
    });
    window.supertestEditor = editor;
    // htmx reads the form itself, so copy the editor's text into the textarea first.
    form.addEventListener("htmx:configRequest", function (event) {
      editor.save();
      event.detail.parameters.set ? event.detail.parameters.set("script", editor.getValue())
                                  : (event.detail.parameters.script = editor.getValue());
    });
  }

  function tickElapsed() {
    document.querySelectorAll("[data-elapsed-since]").forEach(function (el) {
      var started = Date.parse(el.getAttribute("data-elapsed-since"));
      if (!isNaN(started)) el.textContent = Math.max(0, Math.round((Date.now() - started) / 1000)) + " s";
    });
  }

  // Forms that destroy something say what first (data-confirm); without JavaScript they just go.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", setUpEditor);
  setInterval(tickElapsed, 1000);
})();
