// Duragent dashboard: live session transcripts over SSE, forms sent without leaving the page,
// confirmation before a revert. Pages work without this script (reload to see new replies).
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Control and bidirectional characters written out as escapes (`\u2067`), as the server's pages
  // and the terminal show them: isolates and overrides would reorder what a page shows, so a
  // command waiting for approval could read as a harmless one (duragent/terminal_text.py).
  const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
  const NAMED = { "\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b", "\x00": "\\0" };
  function printable(text) {
    return String(text).replace(/\r\n/g, "\n").replace(CONTROLS, (char) => {
      const code = char.charCodeAt(0);
      return NAMED[char] || (code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0"));
    });
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = printable(text);
    return node;
  }

  function followTranscript(list) {
    const agent = document.querySelector(".meta strong")?.textContent || "assistant";
    const status = document.getElementById("session-status");
    const approvals = document.getElementById("approvals");
    let streaming = null; // the reply being streamed, until its message is stored
    const url = new URL(list.dataset.events, location.href);
    url.searchParams.set("after", list.dataset.after || "0");
    const source = new EventSource(url);

    function add(node) {
      if (streaming && streaming.parentNode) list.insertBefore(node, streaming);
      else list.appendChild(node);
      node.scrollIntoView({ block: "nearest" });
    }
    function message(role, who, text) {
      const item = el("li", "msg " + role);
      item.appendChild(el("span", "who", who));
      item.appendChild(el("div", "text", text));
      return item;
    }
    function finish(text) {
      if (streaming) streaming.remove();
      streaming = null;
      if (text) add(message("assistant", agent, text));
    }
    function on(name, handler) {
      source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
    }

    on("start", (d) => add(message("user", "user", d.content || "")));
    on("token", (d) => {
      if (!streaming) {
        streaming = message("assistant streaming", agent, "");
        list.appendChild(streaming);
      }
      streaming.querySelector(".text").textContent += printable(d.content || "");
      streaming.scrollIntoView({ block: "nearest" });
    });
    on("message", (d) => finish(d.content || ""));
    on("done", (d) => finish(d.content || ""));
    on("tool_call", (d) => add(el("li", "tool", "→ " + d.tool + " " + JSON.stringify(d.arguments || {}))));
    on("tool_result", (d) => {
      const item = el("li", "tool " + (d.ok === false ? "failed" : "ok"), "← " + d.tool + (d.ok === false ? " failed: " : " ok: "));
      item.appendChild(el("pre", "", String(d.content || "").slice(0, 2000)));
      add(item);
    });
    on("approval_required", (d) => {
      add(el("li", "tool asked", "? approval asked for " + (d.command || d.tool)));
      approvals.appendChild(approvalForm(list, d));
    });
    on("approval_decision", (d) => {
      add(el("li", "tool", "! " + d.decision));
      approvals.querySelectorAll("form").forEach((form) => {
        if (form.elements.call_id.value === d.call_id) form.remove();
      });
    });
    on("notification", (d) => add(el("li", "tool", "✉ " + (d.message || ""))));
    on("error", (d) => { finish(""); add(el("li", "error", "error " + (d.code || "") + ": " + (d.message || ""))); });
    on("cancelled", () => { finish(""); add(el("li", "error", "cancelled")); });
    on("status", (d) => { if (status && d.to) { status.textContent = d.to; status.className = "state state-" + d.to; } });
  }

  function approvalForm(list, d) {
    const form = el("form", "approval");
    form.method = "post";
    form.action = list.dataset.events.replace(/\/events$/, "/approve");
    for (const [name, value] of [["csrf", csrf()], ["call_id", d.call_id]]) {
      const input = el("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.appendChild(input);
    }
    const question = el("p", "", "The agent wants to run ");
    question.appendChild(el("code", "", d.command || d.tool));
    form.appendChild(question);
    for (const decision of ["allow_once", "allow_always", "deny"]) {
      const button = el("button", "", decision.replace("_", " "));
      button.type = "submit"; button.name = "decision"; button.value = decision;
      form.appendChild(button);
    }
    sendInPlace(form);
    return form;
  }

  // Post a form with fetch and stay on the page (the transcript shows what follows).
  function sendInPlace(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new URLSearchParams(new FormData(form, event.submitter));
      const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
      if (!response.ok) { alert("Not sent: " + (await response.text())); return; }
      if (form.classList.contains("approval")) form.remove();
      if (form.id === "send") { form.reset(); form.elements.content.focus(); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("transcript");
    if (list && window.EventSource) {
      followTranscript(list);
      document.querySelectorAll("form.send, form.approval").forEach(sendInPlace);
      const content = document.getElementById("content");
      content?.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) content.form.requestSubmit();
      });
    }
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
