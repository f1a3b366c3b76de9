"""Exit 0 once the ZooKeeper member at HOST PORT serves as leader or follower (srvr), 1 after
TIMEOUT seconds. Run by the unit's ExecStartPost so that `systemctl restart` returns only when
the member is back in the ensemble. With TLS_DIR (ca.crt, host.crt, host.key), over TLS with
the member's own certificate (the client port accepts nothing else)."""

import socket
import ssl
import sys
import time

host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
context = None
if len(sys.argv) > 4:
    context = ssl.create_default_context(cafile=f"{sys.argv[4]}/ca.crt")
    context.load_cert_chain(f"{sys.argv[4]}/host.crt", f"{sys.argv[4]}/host.key")
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=2) as raw:
            s = context.wrap_socket(raw, server_hostname=host) if context else raw
            s.sendall(b"srvr")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if b"Mode: leader" in data or b"Mode: follower" in data:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
print(f"ZooKeeper on {host}:{port} did not join its ensemble within {timeout:.0f} s",
      file=sys.stderr)
sys.exit(1)
