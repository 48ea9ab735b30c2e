// The receipt's check ("periksa"), in the citizen's browser, with WebCrypto
// only (SHA-256 and Ed25519). It fetches the proof of the case's opening
// entry (GET /lacak/{tn}/bukti, format mpp-hub-receipt/v1) and believes
// none of it: the keys come from the page (data-origin, data-hub-key,
// data-witness-keys, data-quorum: the hub's configuration, which the page
// also prints for comparison with what the operator and the witnesses
// publish). It checks, in order (docs/AUDIT.md, "Checking a receipt"):
//   1. the entry's bytes: format 1 and the sequence the proof claims;
//   2. leaf = SHA-256(0x00 || SHA-256("mpp-hub/log-entry/v1" 0x00 || bytes));
//   3. the RFC 9162 inclusion proof from the leaf to the checkpoint's root;
//   4. the checkpoint note: this hub's origin, the proof's tree size, and
//      the hub's Ed25519 note signature (C2SP signed-note);
//   5. every cosignature line of a configured witness (C2SP
//      tlog-cosignature, cosignature/v1): any that does not verify fails
//      the check; at least data-quorum must verify.
// window.mppPeriksa.periksa(proof) runs the same check on a proof given
// (an auditor may paste one in the console; the e2e test feeds it a
// tampered copy).
(function () {
  "use strict";
  var box = document.getElementById("periksa");
  if (!box) { return; }
  var button = document.getElementById("periksa-tombol");
  var out = document.getElementById("periksa-hasil");
  var data = document.getElementById("periksa-data");
  var lang = document.documentElement.lang === "en" ? "en" : "id";
  var enc = new TextEncoder();

  var M = {
    fetch: ["bukti tidak dapat diambil dari hub", "the proof could not be fetched from the hub"],
    nocrypto: ["peramban ini tidak dapat memeriksa tanda tangan Ed25519; pakai perintah di bawah",
      "this browser cannot check Ed25519 signatures; use the command below"],
    format: ["bukti tidak berformat mpp-hub-receipt/v1", "the proof is not of format mpp-hub-receipt/v1"],
    config: ["kunci publik di halaman ini tidak terbaca", "the public keys on this page do not read"],
    entry: ["isi catatan tidak cocok dengan nomor urutnya", "the entry's bytes do not match its position in the log"],
    path: ["jalur bukti tidak mengarah ke akar log yang ditandatangani",
      "the inclusion proof does not lead to the root of the signed log"],
    note: ["checkpoint tidak terbaca", "the checkpoint does not read"],
    origin: ["checkpoint ini bukan milik log hub ini", "the checkpoint is not of this hub's log"],
    size: ["ukuran log di checkpoint berbeda dengan ukuran di bukti",
      "the checkpoint's log size differs from the proof's"],
    hub: ["tanda tangan hub pada checkpoint tidak sah", "the hub's signature on the checkpoint does not verify"],
    cosig: ["tanda tangan saksi {w} tidak sah", "the cosignature of witness {w} does not verify"],
    quorum: ["hanya {k} saksi menandatangani, {q} diperlukan", "only {k} witnesses cosigned, {q} required"]
  };

  function fail(key, vars) { return { ok: false, key: key, vars: vars || {} }; }
  function fill(s, vars) {
    return s.replace(/\{(\w+)\}/g, function (_, k) { return String(vars[k]); });
  }
  function concat() {
    var n = 0, i;
    for (i = 0; i < arguments.length; i++) { n += arguments[i].length; }
    var r = new Uint8Array(n), o = 0;
    for (i = 0; i < arguments.length; i++) { r.set(arguments[i], o); o += arguments[i].length; }
    return r;
  }
  function sha256(b) {
    return crypto.subtle.digest("SHA-256", b).then(function (d) { return new Uint8Array(d); });
  }
  function equal(a, b) {
    if (!a || !b || a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }
  function hex(s) {
    if (typeof s !== "string" || !/^([0-9a-f]{2})*$/.test(s)) { return null; }
    var r = new Uint8Array(s.length / 2);
    for (var i = 0; i < r.length; i++) { r[i] = parseInt(s.substr(i * 2, 2), 16); }
    return r;
  }
  function b64(s) {
    try {
      var t = atob(s), r = new Uint8Array(t.length);
      for (var i = 0; i < t.length; i++) { r[i] = t.charCodeAt(i); }
      return r;
    } catch (e) { return null; }
  }
  function u64(b, at) {
    var v = 0n;
    for (var i = 0; i < 8; i++) { v = v * 256n + BigInt(b[at + i]); }
    return v;
  }
  function node(l, r) { return sha256(concat(new Uint8Array([1]), l, r)); }
  // The key hash of a C2SP note key: SHA-256(name || "\n" || type || key)[:4].
  function keyHash(name, type, key) {
    return sha256(concat(enc.encode(name + "\n"), new Uint8Array([type]), key))
      .then(function (d) { return d.slice(0, 4); });
  }
  function ed25519(key, sig, msg) {
    return crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"])
      .then(function (k) { return crypto.subtle.verify({ name: "Ed25519" }, k, sig, msg); })
      .catch(function () { return false; });
  }

  // RFC 9162 section 2.1.3.2: the root an inclusion path leads to.
  function rootFrom(leaf, index, size, path) {
    if (index >= size) { return Promise.resolve(null); }
    var fn = index, sn = size - 1, i = 0;
    function step(r) {
      if (i === path.length) { return sn === 0 ? r : null; }
      if (sn === 0) { return null; }
      var p = path[i++], next;
      if (fn % 2 === 1 || fn === sn) {
        next = node(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        next = node(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
      return next.then(step);
    }
    return step(leaf);
  }

  // The keys rendered into the page from the hub's configuration.
  function pageKeys() {
    var hubKey = hex(box.getAttribute("data-hub-key") || "");
    var origin = box.getAttribute("data-origin") || "";
    var quorum = parseInt(box.getAttribute("data-quorum") || "0", 10);
    var vkeys = (box.getAttribute("data-witness-keys") || "").split(" ").filter(Boolean);
    if (!hubKey || hubKey.length !== 32 || !origin || !(quorum >= 0)) { return Promise.resolve(null); }
    return Promise.all(vkeys.map(function (v) {
      // name+hash+base64: the base64 may hold "+" too.
      var m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(v);
      if (!m) { return null; }
      var parts = m.slice(1);
      var material = b64(parts[2]);
      if (!material || material.length !== 33 || material[0] !== 4) { return null; }
      var key = material.slice(1);
      return keyHash(parts[0], 4, key).then(function (h) {
        return hex(parts[1]) && equal(h, hex(parts[1])) ? { name: parts[0], key: key, hash: h } : null;
      });
    })).then(function (ws) {
      if (ws.some(function (w) { return !w; })) { return null; }
      return { origin: origin, hubKey: hubKey, quorum: quorum, witnesses: ws };
    });
  }

  // A C2SP signed note: its signed text and signature lines.
  function parseNote(text) {
    if (typeof text !== "string" || text.length > 65536) { return null; }
    var cut = text.lastIndexOf("\n\n");
    if (cut < 0) { return null; }
    var body = text.slice(0, cut + 1), lines = body.split("\n");
    var sigs = [];
    var rest = text.slice(cut + 2).split("\n");
    for (var i = 0; i < rest.length; i++) {
      if (rest[i] === "") { continue; }
      var m = /^\u2014 (\S+) (\S+)$/.exec(rest[i]);
      var bytes = m && b64(m[2]);
      if (!bytes || bytes.length < 5) { return null; }
      sigs.push({ name: m[1], hash: bytes.slice(0, 4), sig: bytes.slice(4) });
    }
    if (lines.length < 4) { return null; }
    return { body: body, origin: lines[0], size: lines[1], root: b64(lines[2]), sigs: sigs };
  }

  function check(proof, keys) {
    if (!window.crypto || !crypto.subtle || typeof BigInt !== "function") {
      return Promise.resolve(fail("nocrypto"));
    }
    if (!keys) { return Promise.resolve(fail("config")); }
    if (!proof || proof.format !== "mpp-hub-receipt/v1" || !Array.isArray(proof.inclusion_proof) ||
        !Number.isSafeInteger(proof.leaf_index) || !Number.isSafeInteger(proof.tree_size) ||
        !Number.isSafeInteger(proof.seq)) {
      return Promise.resolve(fail("format"));
    }
    var bytes = b64(proof.canonical_b64 || "");
    var path = proof.inclusion_proof.map(hex);
    if (!bytes || bytes.length < 9 || path.some(function (p) { return !p || p.length !== 32; })) {
      return Promise.resolve(fail("format"));
    }
    // 1. The entry's bytes say which entry they are.
    if (bytes[0] !== 1 || u64(bytes, 1) !== BigInt(proof.seq) || proof.leaf_index !== proof.seq - 1) {
      return Promise.resolve(fail("entry"));
    }
    var note = parseNote(proof.checkpoint);
    if (!note || !note.root || note.root.length !== 32) { return Promise.resolve(fail("note")); }
    if (note.origin !== keys.origin) { return Promise.resolve(fail("origin")); }
    if (note.size !== String(proof.tree_size)) { return Promise.resolve(fail("size")); }
    // 2. and 3. The leaf, and the path up to the checkpoint's root.
    return sha256(concat(enc.encode("mpp-hub/log-entry/v1"), new Uint8Array([0]), bytes))
      .then(function (entryHash) { return sha256(concat(new Uint8Array([0]), entryHash)); })
      .then(function (leaf) { return rootFrom(leaf, proof.leaf_index, proof.tree_size, path); })
      .then(function (root) {
        if (!equal(root, note.root)) { return fail("path"); }
        return checkSignatures(note, keys, proof);
      });
  }

  // 4. and 5. The hub's signature, then the witnesses' cosignatures.
  function checkSignatures(note, keys, proof) {
    var body = enc.encode(note.body);
    return keyHash(keys.origin, 1, keys.hubKey).then(function (h) {
      var own = note.sigs.filter(function (s) {
        return s.name === keys.origin && equal(s.hash, h) && s.sig.length === 64;
      });
      if (own.length === 0) { return fail("hub"); }
      return ed25519(keys.hubKey, own[0].sig, body).then(function (ok) {
        if (!ok) { return fail("hub"); }
        return Promise.all(keys.witnesses.map(function (w) {
          var lines = note.sigs.filter(function (s) { return s.name === w.name && equal(s.hash, w.hash); });
          return Promise.all(lines.map(function (s) {
            if (s.sig.length !== 72) { return false; }
            var msg = enc.encode("cosignature/v1\ntime " + u64(s.sig, 0).toString() + "\n" + note.body);
            return ed25519(w.key, s.sig.slice(8), msg);
          })).then(function (oks) {
            return { name: w.name, seen: oks.length > 0, bad: oks.indexOf(false) >= 0 };
          });
        })).then(function (ws) {
          var bad = ws.filter(function (w) { return w.bad; });
          if (bad.length > 0) { return fail("cosig", { w: bad[0].name }); }
          var good = ws.filter(function (w) { return w.seen; }).map(function (w) { return w.name; });
          if (good.length < keys.quorum) { return fail("quorum", { k: good.length, q: keys.quorum }); }
          return { ok: true, seq: proof.seq, size: proof.tree_size, witnesses: good, all: keys.witnesses.length };
        });
      });
    });
  }

  function sentences(r) {
    if (!r.ok) {
      return [
        "GAGAL: " + fill(M[r.key][0], r.vars) + ". Jangan percayai bukti ini; laporkan ke penyelenggara MPP atau Ombudsman.",
        "FAILED: " + fill(M[r.key][1], r.vars) + ". Do not trust this proof; report it to the MPP's operator or the Ombudsman."
      ];
    }
    var names = r.witnesses.join(", ");
    if (r.all === 0) {
      return [
        "TERBUKTI: catatan nomor " + r.seq + " (pendaftaran berkas ini) ada di log yang ditandatangani hub pada ukuran " + r.size + ". Hub ini tidak memakai saksi, jadi tidak ada yang menjamin semua orang diperlihatkan log yang sama.",
        "PROVEN: log entry " + r.seq + " (the filing of this case) is in the log the hub signed at size " + r.size + ". This hub has no witnesses, so nobody vouches that everyone is shown the same log."
      ];
    }
    return [
      "TERBUKTI: catatan nomor " + r.seq + " (pendaftaran berkas ini) ada di log yang ditandatangani hub pada ukuran " + r.size + ", dan " + r.witnesses.length + " saksi (" + names + ") menjamin log itu tidak pernah bercabang: semua orang diperlihatkan catatan yang sama.",
      "PROVEN: log entry " + r.seq + " (the filing of this case) is in the log the hub signed at size " + r.size + ", and " + r.witnesses.length + " witnesses (" + names + ") vouched that this log never forked: everyone is shown the same entries."
    ];
  }

  // The verdict in the page's language first, then in the other.
  function show(r) {
    var s = sentences(r), order = lang === "en" ? [1, 0] : [0, 1];
    out.textContent = "";
    var div = document.createElement("div");
    div.className = "verdict " + (r.ok ? "verdict-ok" : "verdict-fail");
    div.id = r.ok ? "periksa-ok" : "periksa-gagal";
    order.forEach(function (i) {
      var p = document.createElement("p");
      p.lang = i === 0 ? "id" : "en";
      p.textContent = s[i];
      div.appendChild(p);
    });
    out.appendChild(div);
    return { ok: r.ok, text: div.innerText || div.textContent };
  }

  function periksa(proof) {
    return pageKeys().then(function (keys) { return check(proof, keys); })
      .catch(function () { return fail("format"); })
      .then(show);
  }

  function run() {
    button.disabled = true;
    return fetch(box.getAttribute("data-bukti"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(periksa, function () { return show(fail("fetch")); })
      .then(function (r) { button.disabled = false; return r; });
  }

  window.mppPeriksa = { periksa: periksa, run: run };
  if (data) { data.open = false; }
  button.hidden = false;
  button.addEventListener("click", run);
})();
