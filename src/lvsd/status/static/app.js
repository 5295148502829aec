// lvsd status page: polls /status once a second and follows /events (no build step).
"use strict";
(function () {
  const TOKEN_KEY = "lvsd-token";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  const $ = (sel) => document.querySelector(sel);

  function headers() {
    return token ? { Authorization: "Bearer " + token } : {};
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) {
      e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    }
    return e;
  }
  function when(t) {
    if (t == null) return "–";
    return new Date(t * 1000).toLocaleTimeString();
  }
  function updown(v) {
    if (v === true) return el("span", { class: "up" }, "UP");
    if (v === false) return el("span", { class: "down" }, "DOWN");
    return el("span", { class: "unknown" }, "pending");
  }
  function dl(target, pairs) {
    target.replaceChildren();
    for (const [k, v] of pairs) target.append(el("dt", {}, k), el("dd", {}, v));
  }

  // the service as ipvsadm -Ln prints it: scheduler, (flags), persistent T, mask M, ops
  function serviceLine(vs) {
    const flags = (vs.flags || []).filter((f) => f !== "ops");
    let out = (vs.services.length ? vs.services.join(", ") : vs.ident) + " " + vs.scheduler;
    if (flags.length) out += " (" + flags.join(",") + ")";
    if (vs.persistence_timeout != null) {
      out += " persistent " + vs.persistence_timeout;
      if (vs.persistence_granularity) out += " mask " + vs.persistence_granularity;
    }
    if ((vs.flags || []).includes("ops")) out += " ops";
    return out;
  }
  function conns(x) {
    return x.active_conns == null ? "–" : x.active_conns + "/" + x.inactive_conns;
  }
  // ipvsadm -Ln --stats and --rate in one cell: conns, packets and bytes in/out, and rates
  function traffic(st) {
    if (st == null) return "–";
    return st.conns + " conns · pkts " + st.inpkts + "/" + st.outpkts + " · bytes " +
      st.inbytes + "/" + st.outbytes + " · rate " + st.cps + " cps " + st.inpps + "/" +
      st.outpps + " pps " + st.inbps + "/" + st.outbps + " Bps";
  }

  function render(s) {
    // router_id: what the operator named this director; the config id (-i) when it differs
    const rid = s.config.router_id;
    $("#config-id").textContent = (rid ? rid : s.config.config_id) +
      (rid && s.config.config_id && s.config.config_id !== rid ?
        " (config id " + s.config.config_id + ")" : "") + " (" + s.process.mode + ")";
    const tb = $("#instances tbody");
    tb.replaceChildren();
    for (const i of s.instances) {
      const last = i.transitions.length ? i.transitions[i.transitions.length - 1] : null;
      const invalid = Object.entries(i.invalid_packets).map(([k, v]) => k + "=" + v).join(" ");
      tb.append(el("tr", { "data-instance": i.name },
        el("td", {}, i.name), el("td", {}, i.vrid), el("td", {}, i.interface || ""),
        el("td", { class: "state state-" + i.state }, i.state),
        el("td", {}, i.effective_priority + "/" + i.base_priority),
        el("td", {}, (i.master || "?") + (i.master_priority != null ? " (" + i.master_priority + ")" : "")),
        el("td", {}, i.vips.join(" ") + (i.vips_held ? " ✔" : "")),
        el("td", {}, i.adverts_sent + "/" + i.adverts_received),
        el("td", {}, invalid || "0"),
        el("td", {}, last ? when(last.at) + " " + last.old + "→" + last.new + ": " + last.reason : "–")));
    }
    const vsDiv = $("#virtual-servers");
    vsDiv.replaceChildren();
    for (const vs of s.virtual_servers) {
      const t = el("table", { "data-vs": vs.ident });
      t.append(el("caption", {}, serviceLine(vs) + " · " + vs.lb_kind +
        " · quorum " + (vs.quorum_up ? "up" : "DOWN") + " (" + vs.alive + "/" + vs.quorum + ")" +
        " · live weight " + vs.live_weight +
        (vs.sorry_server ? " · sorry " + vs.sorry_server + (vs.sorry_active ? " ACTIVE" : "") : "") +
        " · conns " + conns(vs) + " · " + traffic(vs.stats)));
      t.append(el("tr", {}, ...["Real server", "Health", "Weight (dp/cfg/dyn)", "Failed checkers",
        "Since", "Why", "Forward", "Conns (act/inact)", "Traffic"].map((h) => el("th", {}, h))));
      for (const rs of vs.real_servers) {
        const host = rs.address.includes(":") ? "[" + rs.address + "]" : rs.address;
        t.append(el("tr", { "data-rs": host + ":" + rs.port },
          el("td", {}, host + ":" + rs.port), el("td", { class: "health" },
            rs.draining ? el("span", { class: "draining" }, "draining") : updown(rs.alive)),
          el("td", {}, (rs.dataplane_weight == null ? "–" : rs.dataplane_weight) + "/" +
            rs.configured_weight + "/" + (rs.dynamic_weight == null ? "–" : rs.dynamic_weight)),
          el("td", {}, rs.failed_checkers.join(", ")), el("td", {}, when(rs.since)),
          el("td", {}, rs.reason + (rs.draining_until == null ? "" : " until " + when(rs.draining_until))),
          el("td", {}, rs.forward || "–"), el("td", {}, conns(rs)),
          el("td", {}, traffic(rs.stats))));
      }
      vsDiv.append(t);
    }
    const ct = $("#checkers tbody");
    ct.replaceChildren();
    for (const c of s.checkers) {
      ct.append(el("tr", { "data-checker": c.checker + " " + c.vs },
        el("td", {}, c.checker), el("td", {}, c.real_server + " in " + c.vs),
        el("td", {}, updown(c.up)), el("td", {}, c.last_result || "–"),
        el("td", {}, c.latency_seconds == null ? "–" : (c.latency_seconds * 1000).toFixed(1) + " ms"),
        el("td", {}, c.error || ""), el("td", {}, when(c.next_check_at)),
        el("td", {}, c.checks_total),
        el("td", {}, Object.entries(c.failures || {}).map(([k, v]) => k + "=" + v).join(" ") || "0")));
    }
    const r = s.reconciler;
    dl($("#reconciler"), [["data plane", r.dataplane], ["last run", when(r.last_run_at)],
      ["runs", r.runs_total], ["ops", r.ops_total], ["repairs", r.repairs_total],
      ["errors", r.errors_total], ["alarms", r.alarms.join("; ") || "none"],
      ["last error", r.last_error || "none"]]);
    const c = s.config;
    dl($("#config"), [["file", c.file], ["loaded", when(c.loaded_at)],
      ["router_id", c.router_id || "(host name)"], ["config id", c.config_id],
      ["generation", c.generation],
      ["last reload", c.last_reload_ok == null ? "never" :
        (c.last_reload_ok ? "ok" : "REJECTED: " + c.last_reload_errors.join("; ")) +
        " at " + when(c.last_reload_at)]]);
    $("#updated").textContent = when(s.generated_at);
  }

  function setConn(ok, text) {
    const c = $("#conn");
    c.textContent = text;
    c.className = "conn " + (ok ? "ok" : "err");
  }

  async function poll() {
    try {
      const resp = await fetch("/status", { headers: headers(), cache: "no-store" });
      if (resp.status === 401) {
        $("#auth").hidden = false;
        setConn(false, "token required");
        return;
      }
      render(await resp.json());
      setConn(true, "live");
    } catch (e) {
      setConn(false, "disconnected");
    }
  }

  function addEvent(ev) {
    const list = $("#events");
    let text = when(ev.at) + " " + ev.type;
    for (const [k, v] of Object.entries(ev)) {
      if (k !== "at" && k !== "type" && k !== "id") text += " " + k + "=" + JSON.stringify(v);
    }
    list.prepend(el("li", {}, text));
    while (list.children.length > 100) list.lastChild.remove();
  }

  async function follow() {
    // fetch streaming rather than EventSource so the bearer token can be sent.
    for (;;) {
      try {
        const resp = await fetch("/events", { headers: headers() });
        if (!resp.ok || !resp.body) throw new Error("status " + resp.status);
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let idx;
          while ((idx = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, idx);
            buf = buf.slice(idx + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: "))
              .map((l) => l.slice(6)).join("\n");
            if (data) { addEvent(JSON.parse(data)); poll(); }
          }
        }
      } catch (e) { /* retry below */ }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  $("#auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("#auth-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#auth").hidden = true;
    poll();
  });
  poll();
  setInterval(poll, 1000);
  follow();
})();
