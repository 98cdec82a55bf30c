"""An RFC 6455 / RFC 7692 conformance suite for anyws, organised like Autobahn's.

A raw peer (:mod:`.peer`, hand-built frames, no WebSocket library) drives an anyws
echo server and anyws echo clients (:mod:`.harness`) through numbered cases:

* 1 to 5: framing, ping/pong, reserved bits, opcodes, fragmentation
  (:mod:`.cases_framing`);
* 6 and 7: UTF-8 and the closing handshake (:mod:`.cases_utf8_close`);
* 9: limits (:mod:`.cases_limits`);
* 12 and 13: permessage-deflate (:mod:`.cases_deflate`);
* H: the opening handshake (:mod:`.cases_handshake`).

Each case gets an Autobahn-style verdict: OK, NON-STRICT or FAILED. ``pytest
tests/conformance`` runs one test per case and side; ``python -m tests.conformance``
prints the summary that docs/conformance.md reproduces.
"""
