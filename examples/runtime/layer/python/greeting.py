"""A layer's module: Lambda puts a layer's python/ folder on the path after the code."""


def greet(name):
    return f"hello from {name}'s layer"
