# A p2pool node as a .tac file: the same node as `twistd -n p2pool`.
#
#   twistd -ny tac/node.tac                               # built-in defaults
#   P2POOL_CONFIG=tac/node.toml twistd -ny tac/node.tac   # with a config file
#
# Its log goes to standard output, filtered and formatted as [log] says
# (twistd's --logfile does not apply to it).
#
# Copy this file to start an application of your own: pass your
# IPoolApplication as make_node_service(config, app=...).
import os
import sys

from twisted.application.service import Application

from p2pool.daemon.logs import node_log_observer
from p2pool.node import exit_on_start_failure, load_node_config, make_node_service

# A configuration error exits with status 2, naming the key (no traceback).
config = load_node_config(os.environ.get("P2POOL_CONFIG") or None)

application = Application("p2pool")
node = make_node_service(config)
node.log_observer = node_log_observer(config.log, sys.stdout)
node.setServiceParent(application)
exit_on_start_failure(node)  # exit status 1 if the node cannot start
