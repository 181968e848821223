"""The floor any Fabric-based tool pays: a fresh process that imports Fabric, connects and runs `true`.

Plain Fabric on a socket with TCP_NODELAY (the issue's floor), not the tool's open_connection: that one
also ACKs the host's post-login notice at once (deploy.connect._ack_notices_at_once), which a plain Fabric
connection waits 40 ms for on loopback; the floor does not get the tool's own gains.
"""

import socket
import sys

from fabric import Config, Connection

if __name__ == "__main__":
    config = Config(runtime_ssh_path=sys.argv[1])
    config.load_ssh_config()
    c = Connection(sys.argv[2], config=config)
    tcp = socket.create_connection((c.host, c.port), timeout=15)
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.connect_kwargs["sock"] = tcp
    c.open()
    c.run("true", hide=True)
