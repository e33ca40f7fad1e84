"""
The transport: mutually authenticated TLS between identities, the Twisted protocol of one
peer connection, and the L{Connection} an application holds.
"""
