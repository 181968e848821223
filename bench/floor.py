"""The floor any Fabric-based tool pays: a fresh process that imports Fabric, connects and runs `true`."""

import sys

from fabric import Config, Connection

from deploy.connect import open_connection

if __name__ == "__main__":
    config = Config(runtime_ssh_path=sys.argv[1])
    config.load_ssh_config()
    c = Connection(sys.argv[2], config=config)
    open_connection(c)
    c.run("true", hide=True)
