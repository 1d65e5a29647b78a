"""xdpgate's REST API: `create_app(controller, tokens)` (app.py) and `serve(app)` (server.py).

Importing this package creates nothing and attaches nothing.
"""
