"""Wait (bounded) until ADDR PORT accepts a TCP connection. argv: ADDR PORT"""

import socket
import sys
import time

for _ in range(100):
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()
        break
    except OSError:
        time.sleep(0.05)
else:
    raise SystemExit(f"{sys.argv[1]}:{sys.argv[2]} never answered")
