"""The Model Context Protocol server: Vectorizer's tools for agents (``vectorizer.mcp.tools``).

Two transports, one set of tools: ``vectorizer mcp`` over stdio (a desktop agent starts it; it
talks to a running server over HTTP), and streamable HTTP mounted on the server at ``/mcp``.
"""
