// Can this browser draw Chinese? Without a CJK font (a fresh Debian with chromium alone, say) every
// Chinese character is drawn as the same empty box, the font's .notdef glyph, and the chat reads as
// boxes with nothing saying why. So the page draws three different characters in its own font stack
// on a canvas: real glyphs differ, the box is the same each time; when all three are pixel for pixel
// the same, a one-line note under the header names a font to install. (document.fonts.check() cannot
// tell: it answers true whenever no web font in the list is still to load, whatever the fallback
// draws. Firefox draws a missing glyph as a box holding its code point, so the three differ there
// and no note shows: its boxes say what is missing.) mof-serve's page and mof-web's site load this
// same file.
"use strict";

(function () {
  const SAMPLES = ["你", "好", "中"];
  const SIZE = 48;

  function cjkMissing() {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = SIZE;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) return false;                        // no canvas: say nothing rather than guess
    ctx.font = "32px " + (getComputedStyle(document.body).fontFamily || "sans-serif");
    ctx.textBaseline = "top";
    const drawn = SAMPLES.map((ch) => {
      ctx.clearRect(0, 0, SIZE, SIZE);
      ctx.fillText(ch, 4, 4);
      return ctx.getImageData(0, 0, SIZE, SIZE).data;
    });
    return drawn.every((pixels) => pixels.every((v, i) => v === drawn[0][i]));
  }

  function showNote() {
    const note = document.createElement("p");
    note.id = "font-note";
    note.setAttribute("role", "note");
    const command = document.createElement("code");
    command.textContent = "apt install fonts-wqy-microhei";
    note.append("Chinese text needs a CJK font: on Debian/Ubuntu ", command, ", then reload.");
    document.querySelector("header").after(note);
  }

  function check() {
    if (cjkMissing()) showNote();
  }

  window.mofFonts = { cjkMissing };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", check);
  else check();
})();
