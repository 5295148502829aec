"""VRRP for lvsd: a sans-IO core (codec, machine, params) and thin I/O shells.

Core modules (pure, no sockets, no clock):

* ``lvsd.vrrp.codec``   -- encode/decode VRRPv2/v3 adverts; ``decode`` never raises.
* ``lvsd.vrrp.params``  -- ``VrrpParams``: everything one instance's machine needs.
* ``lvsd.vrrp.machine`` -- ``VrrpMachine`` (RFC 5798 §6.4 + keepalived choices) and
  ``SyncGroup``; fed events and ``now``, returns actions and ``next_deadline``.

Transports, VIP actions, GARP/NA and notify scripts live in sibling modules (vrrp-net).
"""
