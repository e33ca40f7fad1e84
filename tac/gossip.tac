# A gossip node: p2pool.examples.gossip embedded in a p2pool node.
#
#   twistd -ny tac/gossip.tac                                   # built-in defaults
#   P2POOL_CONFIG=n2.toml GOSSIP_PUBLISH_EVERY=5 twistd --pidfile= -ny tac/gossip.tac
#
# $P2POOL_CONFIG names the node's TOML file (as for tac/node.tac);
# $GOSSIP_PUBLISH_EVERY, in seconds, makes the node publish "hello from
# <listen> #<n>" that often. Every message received is logged
# ("gossip received <id> from <peer> (ttl <n>): <text>").
# docs/EMBEDDING.md builds the same thing step by step.
import os
import sys

from twisted.application.service import Application

from p2pool.examples.gossip import Gossip, Publisher, publish_period
from p2pool.node import EXIT_CONFIG_ERROR, load_node_config, make_node_service

config = load_node_config(os.environ.get("P2POOL_CONFIG") or None)

# A bad period exits with status 2, naming the variable (no traceback).
publish_every = os.environ.get("GOSSIP_PUBLISH_EVERY")
try:
    every = publish_period(publish_every) if publish_every else None
except ValueError as e:
    sys.stderr.write(f"gossip: error: GOSSIP_PUBLISH_EVERY: {e}\n")
    raise SystemExit(EXIT_CONFIG_ERROR) from None

application = Application("gossip")
gossip = Gossip()
node = make_node_service(config, app=gossip)
gossip.attach(node.pool)
node.setServiceParent(application)

if every is not None:
    Publisher(gossip, every, text=f"hello from {config.listen}").setServiceParent(application)
