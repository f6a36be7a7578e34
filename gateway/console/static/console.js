// Progressive enhancement only: every page works without this file. Ask before an action that needs a reason
// is sent without one, and focus the first refusal or confirmation so a screen reader announces it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const notice = document.querySelector(".refused, .ok-note");
  if (notice) { notice.setAttribute("tabindex", "-1"); notice.focus(); }
  for (const form of document.querySelectorAll("form.action")) {
    form.addEventListener("submit", (event) => {
      const action = form.dataset.action;
      const note = form.querySelector("textarea[name=note]");
      if (["cancel", "return", "hang"].includes(action) && note && !note.value.trim()) {
        event.preventDefault();
        note.setAttribute("aria-invalid", "true");
        note.focus();
      }
    });
  }
});
