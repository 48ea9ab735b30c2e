// Proof of work for the lookup form, while the hub asks for one (many
// lookups failed lately): on submit, finds n such that
// SHA-256(challenge ":" tracking-digits ":" n) starts with `bits` zero bits
// and sends "challenge:n" as the form's `bukti`. Without JavaScript the
// form carries a delay token instead, good after the wait the page shows.
(function () {
  "use strict";
  var form = document.getElementById("cari");
  if (!form) { return; }
  var challenge = form.getAttribute("data-challenge");
  var bits = parseInt(form.getAttribute("data-bits") || "0", 10);
  if (!challenge || !(bits > 0)) { return; }
  var K = [0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
    0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
    0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
    0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
    0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
    0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
    0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
    0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
  var W = new Array(64);
  // SHA-256 of an ASCII string; returns the first word of the digest
  // and the second (enough to count up to 64 leading zero bits).
  function sha256(s) {
    var n = s.length, words = ((n + 9 + 63) >> 6) << 4, m = new Array(words), i;
    for (i = 0; i < words; i++) { m[i] = 0; }
    for (i = 0; i < n; i++) { m[i >> 2] |= (s.charCodeAt(i) & 0xff) << (24 - 8 * (i & 3)); }
    m[n >> 2] |= 0x80 << (24 - 8 * (n & 3));
    m[words - 1] = n * 8;
    var h = [0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
    for (var o = 0; o < words; o += 16) {
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7], t;
      for (i = 0; i < 64; i++) {
        if (i < 16) { W[i] = m[o + i] | 0; } else {
          var x = W[i - 15], y = W[i - 2];
          W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + W[i - 16] +
            (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[i - 7] | 0;
        }
        t = k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
          ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
        var t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
          ((a & b) ^ (a & c) ^ (b & c)) | 0;
        k = g; g = f; f = e; e = d + t | 0; d = c; c = b; b = a; a = t + t2 | 0;
      }
      h[0] = h[0] + a | 0; h[1] = h[1] + b | 0; h[2] = h[2] + c | 0; h[3] = h[3] + d | 0;
      h[4] = h[4] + e | 0; h[5] = h[5] + f | 0; h[6] = h[6] + g | 0; h[7] = h[7] + k | 0;
    }
    return [h[0] >>> 0, h[1] >>> 0];
  }
  function enough(d) {
    if (bits <= 32) { return bits === 32 ? d[0] === 0 : (d[0] >>> (32 - bits)) === 0; }
    return d[0] === 0 && (d[1] >>> (64 - bits)) === 0;
  }
  var solving = false;
  form.addEventListener("submit", function (ev) {
    if (solving) { ev.preventDefault(); return; }
    var digits = (document.getElementById("nomor").value || "").replace(/[^0-9]/g, "");
    if (digits.length !== 15) { return; }
    ev.preventDefault();
    solving = true;
    var note = document.getElementById("bukti-catatan");
    if (note) { note.textContent = note.getAttribute("data-working") || note.textContent; }
    var prefix = challenge + ":" + digits + ":", i = 0;
    (function step() {
      for (var end = i + 20000; i < end; i++) {
        if (enough(sha256(prefix + i))) {
          document.getElementById("bukti").value = challenge + ":" + i;
          form.submit();
          return;
        }
      }
      setTimeout(step, 0);
    })();
  });
})();
