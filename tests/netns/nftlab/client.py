"""Client driven line by line on stdin; answers one JSON line per command.

  burst N      -> N new connections, one request each: {"counts": {name: n}, "errors": k}
  hold         -> open a keep-alive connection and send one request: {"server": name}
  again        -> one more request on the held connection: {"server": name}
argv: VIP PORT
"""

from __future__ import annotations

import http.client
import json
import sys

VIP, PORT = sys.argv[1], int(sys.argv[2])
held: http.client.HTTPConnection | None = None


def get(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/")
    return conn.getresponse().read().decode()


for line in sys.stdin:
    cmd = line.split()
    out: dict[str, object]
    try:
        if cmd[0] == "burst":
            counts: dict[str, int] = {}
            errors = 0
            for _ in range(int(cmd[1])):
                c = http.client.HTTPConnection(VIP, PORT, timeout=3)
                try:
                    name = get(c)
                    counts[name] = counts.get(name, 0) + 1
                except OSError:
                    errors += 1
                finally:
                    c.close()
            out = {"counts": counts, "errors": errors}
        elif cmd[0] == "hold":
            held = http.client.HTTPConnection(VIP, PORT, timeout=3)
            out = {"server": get(held)}
        elif cmd[0] == "again":
            assert held is not None
            out = {"server": get(held)}
        else:
            out = {"error": f"unknown command {cmd[0]}"}
    except Exception as exc:  # report, the test decides
        out = {"error": repr(exc)}
    print(json.dumps(out), flush=True)
