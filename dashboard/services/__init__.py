"""What the routes call: one function per thing a page asks for, below the HTTP layer.

A route validates its input, checks the user's scope and calls one function here; a service never
imports a route, and the routes never import one another.
"""
