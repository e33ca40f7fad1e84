"""
The sans-I/O core: identities, addresses, the wire codec, the handshake, the point and peer
state machines, the ACL and the tables. Nothing here touches a reactor or a socket.
"""
