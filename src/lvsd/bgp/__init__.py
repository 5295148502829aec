"""lvsd's BGP announcement mode (docs/bgp.md): :mod:`.announce` and :mod:`.health` decide
(sans-IO), :mod:`.bird` and :mod:`.birdctl` drive the BIRD 2 daemon that speaks BGP."""
