"""The HTTP edge: uvicorn's httptools protocol with limits on heads, bodies, slow clients and connections.

``server.serve(app, settings)`` runs an ASGI app behind it; ``protocol.EdgeProtocol`` enforces the limits;
``connections.ConnectionRegistry`` counts open connections per client address and in total.
"""
